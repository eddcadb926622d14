"""Proof that the libraries can replace the hand-written pieces: torch's FlopCounterMode counts what
training.flops.FlopCounter counts on every registry model's training step, and torch.optim's Adam and RMSprop
(with torch.optim.lr_scheduler driving the schedule) make the hand-written classes' updates bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from baselines.vae import VAE
from core import registry
from core.params import load_params
from models.lapcvae import LapCVAE, LevelTrainable, PriorRetrainer
from training import flops, optimizers
from training import loop as training
from training.baseline_jobs import build_baseline


class TorchsFlopCounter(FlopCounterMode):
    """torch's FlopCounterMode behind training.flops.FlopCounter's interface."""

    def __init__(self) -> None:
        super().__init__(display=False)

    @property
    def total(self) -> int:
        return int(self.get_total_flops())


def registry_trainables(params: dict, resolution: int) -> dict[str, torch.nn.Module]:
    """Every training job's trainable of every registry model at `resolution` (a LapCVAE: one per level)."""
    level_params = params["lapcvae"][str(resolution)]
    levels = int(level_params["levels"])
    trainables = {}
    for spec in registry.MODELS.values():
        torch.manual_seed(0)
        if spec.trained_by == registry.TRAIN_ONE_JOB:
            trainables[spec.name] = build_baseline(params, spec.name, resolution)
        elif spec.trained_by == registry.TRAIN_PER_LEVEL:
            for level in range(levels):
                model = LapCVAE.from_params(level_params, resolution, use_m=bool(spec.options["use_m"]),
                                            trained_levels=levels - level)
                trainables[f"{spec.name} level {level}"] = LevelTrainable(model, level)
        else:
            trainables[spec.name] = PriorRetrainer(LapCVAE.from_params(level_params, resolution, use_m=True))
    return trainables


def test_flopcountermode_counts_every_registry_model_s_training_step_as_the_suite_s_counter(monkeypatch):
    params = load_params("config/smoke.yaml")
    resolution = 64
    ours = {name: flops.training_step_flops(trainable, resolution)
            for name, trainable in registry_trainables(params, resolution).items()}
    monkeypatch.setattr(flops, "FlopCounter", TorchsFlopCounter)
    theirs = {name: flops.training_step_flops(trainable, resolution)
              for name, trainable in registry_trainables(params, resolution).items()}
    assert {name.split(" level")[0] for name in ours} == set(registry.MODELS)
    assert all(count > 0 for count in ours.values())
    assert ours == theirs


def small_vae() -> VAE:
    torch.manual_seed(0)
    return VAE(resolution=16, latent_dim=5, widths=[4, 8], kl_weight=1.0)


def small_level() -> LevelTrainable:
    torch.manual_seed(0)
    model = LapCVAE(resolution=16, levels=2, latent_dims=[4, 3], kl_weights=[0.1, 1.0], widths=[4, 8],
                    feature_size=4, m_hidden=6, use_m=True)
    return LevelTrainable(model, level=0)


STEPS = 20
SCHEDULE = {"warmup": 0.2, "decay": "cosine"}
KL_WARMUP = 0.5


def train_20_steps(build, kind: str, library: bool, options: dict) -> torch.Tensor:
    """STEPS steps as the loop takes them (KL warm-up, clipping, the schedule), with a resume at step 8; the
    hand-written optimizer's rate set by the loop's rule, torch.optim's by LambdaLR. Returns every weight."""
    trainable = build()
    ((name, group),) = trainable.parameter_groups().items()
    params = list(group)
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (STEPS, 4, 3, 16, 16), dtype=np.uint8))
    classes = {"adam": (optimizers.Adam, torch.optim.Adam), "rmsprop": (optimizers.RMSprop, torch.optim.RMSprop)}
    optimizer_class = classes[kind][library]

    def build_optimizer(saved: tuple | None = None):
        optimizer = optimizer_class(params, **options)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: training.lr_factor(SCHEDULE, step, STEPS)) if library else None
        if saved is not None:
            optimizer.load_state_dict(saved[0])
            if scheduler is not None:
                scheduler.load_state_dict(saved[1])
        return optimizer, scheduler

    optimizer, scheduler = build_optimizer()
    base = optimizer.param_groups[0]["lr"] if not library else None
    torch.manual_seed(1)
    for step in range(STEPS):
        if step == 8:  # a resumed job: new optimizer (and scheduler) from their saved states
            optimizer, scheduler = build_optimizer((optimizer.state_dict(),
                                                    scheduler.state_dict() if scheduler else None))
        trainable.kl_scale = training.kl_factor(KL_WARMUP, step, STEPS)
        result = trainable.training_step(images[step].float() / 255.0)
        if not library:
            optimizer.param_groups[0]["lr"] = base * training.lr_factor(SCHEDULE, step, STEPS)
        training.set_gradients(result.objectives, {name: params}, [name])
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        for param in params:
            param.grad = None
        if scheduler is not None:
            scheduler.step()
    return torch.cat([param.detach().flatten() for param in trainable.parameters()])


@pytest.mark.parametrize("build", [small_vae, small_level], ids=["vae", "lapcvae_level"])
@pytest.mark.parametrize(("kind", "ours", "theirs"), [
    ("adam", {"fused": True}, {"fused": True}),
    ("adam", {}, {"foreach": False}),
    ("adam", {}, {"foreach": True}),
    ("adam", {}, {}),
    ("rmsprop", {}, {"foreach": False}),
    ("rmsprop", {}, {"foreach": True}),
    ("rmsprop", {}, {}),
], ids=["adam-fused", "adam-per-tensor", "adam-foreach", "adam-default", "rmsprop-per-tensor", "rmsprop-foreach",
        "rmsprop-default"])
def test_torch_optim_with_lr_scheduler_makes_the_hand_written_updates_bit_for_bit(build, kind, ours, theirs):
    common = {"lr": 3e-3, "weight_decay": 1e-3}
    initial = torch.cat([param.detach().flatten() for param in build().parameters()])
    hand_written = train_20_steps(build, kind, False, {**common, **ours})
    library = train_20_steps(build, kind, True, {**common, **theirs})
    assert (hand_written - initial).abs().max() > 1e-3  # the steps moved the weights
    assert torch.equal(hand_written, library)
