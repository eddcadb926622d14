"""The shared training loop (training/loop.py): resume, NaN handling, gradient routing, logs, DDP on gloo."""

from __future__ import annotations

import csv
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from core import device as device_module
from models.checkpoint import load_checkpoint
from models.interface import StepResult
from models.lapcvae import LapCVAE, LevelTrainable
from training import loop as training
from training import optimizers
from training.loop import NonFiniteLossError, fit, steps_per_epoch

SETTINGS = {"lr": 1e-3, "batch_size": 4, "epochs": 2, "log_every": 1, "bf16": False, "grad_clip": 1.0}


def level_trainable(seed: int = 0) -> LevelTrainable:
    """Level 0 of a 2-level 8 px LapCVAE, its coarser level random but frozen."""
    torch.manual_seed(seed)
    model = LapCVAE(resolution=8, levels=2, latent_dims=[4, 3], kl_weights=[0.1, 1.0], widths=[4, 8],
                    feature_size=2, m_hidden=6, use_m=True)
    return LevelTrainable(model, level=0)


def train_images(n: int = 12, size: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


class Interrupted(Exception):
    pass


class StopsAtStep(LevelTrainable):
    """Raises at a given step, as a killed job would stop."""

    def __init__(self, model: LapCVAE, level: int, stop_at: int, error: type[Exception] = Interrupted):
        super().__init__(model, level)
        self.calls, self.stop_at, self.error = 0, stop_at, error

    def training_step(self, images: torch.Tensor) -> StepResult:
        self.calls += 1
        if self.calls == self.stop_at:
            raise self.error("stopped")
        return super().training_step(images)


class ProducesNaN(LevelTrainable):
    def __init__(self, model: LapCVAE, level: int, nan_at: int):
        super().__init__(model, level)
        self.calls, self.nan_at = 0, nan_at

    def training_step(self, images: torch.Tensor) -> StepResult:
        self.calls += 1
        result = super().training_step(images)
        if self.calls == self.nan_at:
            result.objectives["level0"] = result.objectives["level0"] * float("nan")
        return result


def test_resumed_run_matches_an_uninterrupted_run_bitwise(tmp_path: Path) -> None:
    data = train_images()
    per_epoch = steps_per_epoch(len(data), SETTINGS["batch_size"])
    trainable = level_trainable()
    fit(trainable, data, settings=SETTINGS, seed=3, output=tmp_path / "a" / "level0.pt", export=trainable.model,
        name="job")
    uninterrupted = load_checkpoint(tmp_path / "a" / "level0.pt")["state_dict"]

    output = tmp_path / "b" / "level0.pt"
    first = level_trainable()
    killed = StopsAtStep(first.model, 0, stop_at=per_epoch + 2)  # during the second epoch
    with pytest.raises(Interrupted):
        fit(killed, data, settings=SETTINGS, seed=3, output=output, name="job")
    assert not output.exists() and output.with_name("level0.pt.resume.pt").exists()
    restarted = level_trainable()  # a fresh process
    fit(restarted, data, settings=SETTINGS, seed=3, output=output, export=restarted.model, name="job")
    resumed = load_checkpoint(output)
    assert resumed["state_dict"].keys() == uninterrupted.keys()
    assert all(torch.equal(resumed["state_dict"][key], uninterrupted[key]) for key in uninterrupted)
    assert not output.with_name("level0.pt.resume.pt").exists()
    with output.with_name("level0.log.csv").open() as handle:
        steps = [int(row["step"]) for row in csv.DictReader(handle)]
    assert steps == list(range(1, 2 * per_epoch + 1))  # the rows of the lost epoch are not duplicated
    assert resumed["meta"]["steps"] == 2 * per_epoch


def test_a_changed_seed_changes_the_weights(tmp_path: Path) -> None:
    data = train_images()
    for seed, name in [(3, "a.pt"), (4, "b.pt")]:
        trainable = level_trainable()
        fit(trainable, data, settings=SETTINGS, seed=seed, output=tmp_path / name, export=trainable.model)
    first, second = load_checkpoint(tmp_path / "a.pt")["state_dict"], load_checkpoint(tmp_path / "b.pt")["state_dict"]
    assert not all(torch.equal(first[key], second[key]) for key in first)


def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoint(tmp_path: Path) -> None:
    data = train_images()
    per_epoch = steps_per_epoch(len(data), SETTINGS["batch_size"])
    trainable = level_trainable()
    failing = ProducesNaN(trainable.model, 0, nan_at=per_epoch + 1)
    output = tmp_path / "level0.pt"
    # Checked on the device, read back only every log_every steps: the message still names the exact step.
    settings = {**SETTINGS, "log_every": 100}
    with pytest.raises(NonFiniteLossError, match=rf"'level0' is nan at step {per_epoch} \(epoch 1\)") as error:
        fit(failing, data, settings=settings, seed=0, output=output)
    assert "training starts over from step 0" in str(error.value)
    assert not output.exists()
    # The last good weights are set aside, not left to be resumed into the same non-finite loss.
    assert not output.with_name("level0.pt.resume.pt").exists()
    kept = output.with_name("level0.pt.nonfinite")
    assert str(kept) in str(error.value)
    resume = torch.load(kept, weights_only=True)
    assert resume["epoch"] == 1 and resume["step"] == per_epoch
    assert all(torch.isfinite(value).all() for value in resume["model"].values() if value.is_floating_point())


def test_weights_made_non_finite_by_the_last_update_are_not_saved(tmp_path: Path) -> None:
    """Every loss of the job is finite, but its one update (Adam at lr 1e39) overflows the weights: the loop
    checks the final weights, so no checkpoint with inf values is written."""
    data = train_images(n=4)
    output = tmp_path / "level0.pt"
    settings = {**SETTINGS, "batch_size": 4, "epochs": 1, "lr": 1e39, "optimizer": "adam", "grad_clip": None}
    with pytest.raises(NonFiniteLossError, match="training ended with .* non-finite values"):
        fit(level_trainable(), data, settings=settings, seed=0, output=output)
    assert not output.exists()


def interrupted_then_resumed(tmp_path: Path, data: np.ndarray, change: str) -> tuple[Path, int]:
    """Interrupt in the second epoch, optionally change something, rerun; returns the output and steps/epoch."""
    per_epoch = steps_per_epoch(len(data), SETTINGS["batch_size"])
    output = tmp_path / "level0.pt"
    first = level_trainable()
    with pytest.raises(Interrupted):
        fit(StopsAtStep(first.model, 0, stop_at=per_epoch + 2), data, settings=SETTINGS, seed=3, output=output,
            name="job")
    assert output.with_name("level0.pt.resume.pt").exists()
    rerun = level_trainable()
    if change == "kl_weights":
        rerun = level_trainable()
        rerun.model.kl_weights[0] = 0.5
        rerun.model.config["kl_weights"] = list(rerun.model.kl_weights)
    elif change == "coarser weights":
        with torch.no_grad():
            next(rerun.model.level(1).parameters()).add_(0.01)
    elif change == "data":
        data = data.copy()
        data[0, 0, 0, 0] ^= 1
    elif change == "delete csv":
        output.with_name("level0.log.csv").unlink()
    fit(rerun, data, settings=SETTINGS, seed=3, output=output, export=rerun.model, name="job")
    return output, per_epoch


@pytest.mark.parametrize("change", ["kl_weights", "coarser weights", "data"])
def test_a_resume_file_is_continued_only_by_the_run_that_made_it(
    tmp_path: Path, change: str, caplog: pytest.LogCaptureFixture,
) -> None:
    data = train_images()
    with caplog.at_level(logging.INFO, logger="training.loop"):
        output, per_epoch = interrupted_then_resumed(tmp_path, data, change)
    part = {"kl_weights": "model config", "coarser weights": "fixed weights", "data": "data"}[change]
    assert any("starting over" in record.message and part in record.message for record in caplog.records)
    assert not any("resuming" in record.message for record in caplog.records)
    assert load_checkpoint(output)["meta"]["steps"] == 2 * per_epoch


def test_an_unchanged_rerun_resumes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="training.loop"):
        interrupted_then_resumed(tmp_path, train_images(), "nothing")
    assert any("resuming" in record.message for record in caplog.records)


def test_a_changed_weight_shape_starts_over_without_a_traceback(tmp_path: Path) -> None:
    data, output = train_images(), tmp_path / "level0.pt"
    per_epoch = steps_per_epoch(len(data), SETTINGS["batch_size"])
    with pytest.raises(Interrupted):
        fit(StopsAtStep(level_trainable().model, 0, stop_at=per_epoch + 2), data, settings=SETTINGS, seed=3,
            output=output, name="job")
    torch.manual_seed(0)
    wider = LapCVAE(resolution=8, levels=2, latent_dims=[5, 3], kl_weights=[0.1, 1.0], widths=[4, 8],
                    feature_size=2, m_hidden=6, use_m=True)
    fit(LevelTrainable(wider, 0), data, settings=SETTINGS, seed=3, output=output, export=wider, name="job")
    assert load_checkpoint(output)["meta"]["steps"] == 2 * per_epoch


@pytest.mark.parametrize("change", ["keep csv", "delete csv"])
def test_the_curve_is_complete_after_a_resume(tmp_path: Path, change: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="training.loop"):
        output, per_epoch = interrupted_then_resumed(tmp_path, train_images(), change)
    assert any("resuming" in record.message for record in caplog.records)
    with output.with_name("level0.log.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(row["step"]) for row in rows] == list(range(1, 2 * per_epoch + 1))  # each step exactly once
    assert all(row["loss"] for row in rows)


def test_bf16_and_fp32_training_reach_similar_losses(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same model and data, trained in fp32 and with bf16 autocast: final losses within 5 % of each other.

    bf16 keeps 8 bits of mantissa (relative rounding ~0.4 %) in the convolutions only; losses, KL terms and Adam
    stay fp32, so after a few steps the losses agree to a few percent. Forced on here even on CPUs without native
    bf16 (emulated, slow, but this model is tiny) so the path is tested everywhere.
    """
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    data, losses = train_images(16), {}
    for bf16 in (False, True):
        trainable = level_trainable()
        fit(trainable, data, settings={**SETTINGS, "bf16": bf16, "epochs": 3}, seed=0,
            output=tmp_path / f"{bf16}.pt", export=trainable.model)
        with (tmp_path / f"{bf16}.log.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        losses[bf16] = float(rows[-1]["loss"])
        assert load_checkpoint(tmp_path / f"{bf16}.pt")["meta"]["precision"] == ("bf16" if bf16 else "fp32")
    assert losses[True] == pytest.approx(losses[False], rel=0.05)
    assert losses[True] != losses[False]  # bf16 really ran


def test_the_fp32_profile_trains_every_model_in_fp32_where_the_default_autocasts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """config/fp32.yaml reproduces tables made without native bf16 on a CPU that has it: no model may keep bf16."""
    from core import registry
    from core.params import REPO_ROOT, load_params, train_settings

    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    cpu = torch.device("cpu")
    for profile, expected in (((), torch.bfloat16), ((REPO_ROOT / "config" / "fp32.yaml",), None)):
        params = load_params(*profile)
        jobs = {(registry.spec(name).params_section, res) for res in params["data"]["resolutions"]
                for name in registry.models_at(params, res)}
        assert {section for section, _ in jobs} == set(registry.params_sections())  # every trained model
        for section, res in jobs:  # each with `train` overrides of its own, which the profile must not miss
            assert device_module.autocast_dtype(cpu, train_settings(params, section, res)["bf16"]) is expected


def test_a_resumed_bf16_run_matches_an_uninterrupted_one_bitwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: True)
    data, settings = train_images(), {**SETTINGS, "bf16": True}
    per_epoch = steps_per_epoch(len(data), settings["batch_size"])
    whole = level_trainable()
    fit(whole, data, settings=settings, seed=3, output=tmp_path / "a" / "level0.pt", export=whole.model, name="job")
    output = tmp_path / "b" / "level0.pt"
    with pytest.raises(Interrupted):
        fit(StopsAtStep(level_trainable().model, 0, stop_at=per_epoch + 2), data, settings=settings, seed=3,
            output=output, name="job")
    rerun = level_trainable()
    fit(rerun, data, settings=settings, seed=3, output=output, export=rerun.model, name="job")
    reference = load_checkpoint(tmp_path / "a" / "level0.pt")["state_dict"]
    resumed = load_checkpoint(output)["state_dict"]
    assert all(torch.equal(resumed[key], reference[key]) for key in reference)


def test_channels_last_training_hands_back_contiguous_weights(tmp_path: Path) -> None:
    trainable = level_trainable()
    assert training.uses_channels_last(trainable)
    fit(trainable, train_images(), settings=SETTINGS, seed=0, output=tmp_path / "x.pt", export=trainable.model)
    assert all(param.is_contiguous() for param in trainable.parameters())


def test_fit_uses_fused_adam_with_the_per_tensor_update_rule() -> None:
    """The loop's Adam is the fused kernel, and ten steps of it land where the per-tensor Adam lands."""
    weights = {}
    for fused in (True, False):
        trainable = level_trainable()
        optimizers = training.make_optimizers(trainable, {"lr": 1e-2, "weight_decay": 1e-3}, fused=fused)
        assert all(bool(optimizer.defaults["fused"]) is fused for optimizer in optimizers.values())
        images = torch.from_numpy(train_images()).float() / 255.0
        torch.manual_seed(1)
        for _ in range(10):
            objectives = trainable.training_step(images).objectives
            training.set_gradients(objectives, {"level0": list(trainable.parameter_groups()["level0"])}, ["level0"])
            optimizers["level0"].step()
        weights[fused] = torch.cat([param.detach().flatten() for param in trainable.parameters()])
    initial = torch.cat([param.detach().flatten() for param in level_trainable().parameters()])
    assert (weights[True] - initial).abs().max() > 1e-2  # the steps moved the weights
    assert torch.allclose(weights[True], weights[False], atol=1e-5)


def test_the_loop_sets_each_step_s_rates_as_torch_s_lambdalr_would(tmp_path: Path, monkeypatch) -> None:
    """The loop scales torch.optim's rates itself (one rule for torch.optim and Muon): each step's rate is the one
    torch.optim.lr_scheduler.LambdaLR gives the same optimizer for the same schedule, to the bit."""
    rates: list[float] = []

    class RecordingAdam(torch.optim.Adam):
        def step(self, closure: None = None) -> None:
            rates.append(self.param_groups[0]["lr"])
            super().step(closure)

    monkeypatch.setitem(training.OPTIMIZERS, "adam", RecordingAdam)
    schedule = {"warmup": 0.25, "decay": "cosine"}
    settings = {**SETTINGS, "optimizer": "adam", "schedule": schedule}
    trainable = level_trainable()
    fit(trainable, train_images(), settings=settings, seed=3, output=tmp_path / "a.pt", export=trainable.model)
    total = len(rates)
    assert total == settings["epochs"] * steps_per_epoch(len(train_images()), settings["batch_size"])
    optimizer = torch.optim.Adam(level_trainable().parameters(), lr=settings["lr"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: training.lr_factor(schedule, step, total))
    expected = []
    for _ in range(total):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradients: nothing moves, but the scheduler sees the order torch expects
        scheduler.step()
    assert rates == expected
    assert len(set(rates)) > 2  # the schedule acted


@pytest.mark.parametrize("shape", [(12, 40), (40, 12)])
def test_newton_schulz_sends_every_singular_value_near_one_and_keeps_the_singular_vectors(shape) -> None:
    """Muon's update direction: U V^T of the momentum U S V^T, approximately, for a spread of singular values."""
    generator = torch.Generator().manual_seed(0)
    left, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=generator))
    right, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=generator))
    spectrum = torch.logspace(1, -1, min(shape))  # condition number 100
    matrix = left @ torch.diag(spectrum) @ right.T
    result = optimizers.orthogonalize(matrix)
    values = torch.linalg.svdvals(result)
    assert values.min() > 0.6 and values.max() < 1.25  # the quintic's band; the input spanned 0.1 .. 10
    scales = torch.diag(left.T @ result @ right)  # the input's singular directions, each kept with its sign
    assert scales.min() > 0.6
    assert (result - scales.mul(left) @ right.T).abs().max() < 1e-4


@pytest.mark.parametrize("shape", [(48, 300), (300, 48)])
def test_orthogonalize_applies_the_newton_schulz_matrix_iteration_through_the_gram_matrix(shape) -> None:
    """The eigendecomposition form makes the update Muon's five rounds of matrix products make: within 0.5 % of them
    in float64 (measured 0.14-0.19 %; the reference implementation's bf16 rounds are 10-30 % off on this matrix)."""
    generator = torch.Generator().manual_seed(1)
    left, _ = torch.linalg.qr(torch.randn(shape[0], min(shape), generator=generator, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(shape[1], min(shape), generator=generator, dtype=torch.float64))
    # A momentum-like spectrum, down to near-null directions (an exact U V^T would send them to 1, the steps do not).
    matrix = left @ torch.diag(torch.logspace(0, -6, min(shape), dtype=torch.float64)) @ right.T
    expected = optimizers.newton_schulz(matrix, dtype=torch.float64)
    result = optimizers.orthogonalize(matrix.float()).double()
    assert (result - expected).norm() < 5e-3 * expected.norm()


@pytest.mark.parametrize("failing", [{torch.float32}, {torch.float32, torch.float64}])
def test_orthogonalize_falls_back_where_lapack_does_not_converge(failing, monkeypatch) -> None:
    """fp32 eigh can fail to converge (it stopped a diverging LapCVAE job): the step is then made in float64, and
    where that fails too by the matrix iteration, the same map either way."""
    eigh = torch.linalg.eigh

    def flaky_eigh(matrix: torch.Tensor):
        if matrix.dtype in failing:
            raise torch.linalg.LinAlgError("linalg.eigh: The algorithm failed to converge")
        return eigh(matrix)

    matrix = torch.randn(20, 50, generator=torch.Generator().manual_seed(2))
    expected = optimizers.orthogonalize(matrix)
    monkeypatch.setattr(torch.linalg, "eigh", flaky_eigh)
    assert torch.allclose(optimizers.orthogonalize(matrix), expected, atol=1e-4)


def test_muon_steps_matrices_along_the_orthogonalised_momentum_and_the_rest_with_adam() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(5, 4)  # weight (4, 5): a matrix; bias (4,): Adam's
    reference = torch.nn.Linear(5, 4)
    reference.load_state_dict(layer.state_dict())
    before = layer.weight.detach().clone()
    muon = optimizers.Muon(layer.parameters(), lr=1e-2, matrix_lr=3e-2)
    adam = torch.optim.Adam([reference.bias], lr=1e-2)
    inputs = torch.randn(8, 5)
    for module in (layer, reference):
        module(inputs).square().sum().backward()
    muon.step()
    adam.step()
    nesterov = layer.weight.grad * (1 + 0.95)  # first step: momentum = grad, Nesterov adds 0.95 of it
    expected = before - 3e-2 * optimizers.orthogonalize(nesterov)  # 4 rows < 5 cols: scale 1
    assert torch.allclose(layer.weight, expected, atol=1e-6)
    assert torch.equal(layer.bias, reference.bias)


def test_muon_leaves_the_input_and_output_layers_to_adam() -> None:
    """Muon orthogonalises hidden weight matrices only: the first convolution on the image, the latent heads and
    the RGB output step exactly as torch's Adam steps them (Jordan et al. 2024)."""
    from baselines.vae import VAE
    from models.interface import io_parameters

    torch.manual_seed(0)
    model = VAE(resolution=16, latent_dim=5, widths=[4, 8], kl_weight=1.0)
    reference = VAE(resolution=16, latent_dim=5, widths=[4, 8], kl_weight=1.0)
    reference.load_state_dict(model.state_dict())
    io = io_parameters(model)
    io_names = {name.rsplit(".", 1)[0] for name, param in model.named_parameters() if id(param) in io}
    assert io_names == {"encoder.features.0.0", "encoder.to_stats", "decoder.to_image"}  # a latent's decoding is hidden
    (muon,) = training.make_optimizers(model, {"optimizer": "muon", "lr": 1e-2, "matrix_lr": 3e-2},
                                       fused=False).values()
    reference_io = [param for name, param in reference.named_parameters() if name.rsplit(".", 1)[0] in io_names]
    adam = torch.optim.Adam(reference_io, lr=1e-2)
    images = torch.rand(4, 3, 16, 16)
    for network in (model, reference):
        torch.manual_seed(1)  # the same reparameterisation noise
        (loss,) = network.training_step(images).objectives.values()
        loss.backward()
    before = model.encoder.features[1][0].weight.detach().clone()
    muon.step()
    adam.step()
    for (name, param), (_, expected) in zip(model.named_parameters(), reference.named_parameters(), strict=True):
        if name.rsplit(".", 1)[0] in io_names:
            assert torch.allclose(param, expected, atol=1e-6), name
    hidden = model.encoder.features[1][0].weight  # (8, 4, 4, 4): a hidden convolution, Muon's
    nesterov = hidden.grad.reshape(8, -1) * (1 + 0.95)  # first step: momentum = grad, Nesterov adds 0.95 of it
    expected = before - 3e-2 * optimizers.orthogonalize(nesterov).reshape(hidden.shape)  # 8 rows < 64 cols
    assert torch.allclose(hidden, expected, atol=1e-6)


def test_muon_resumed_from_its_state_dict_makes_the_same_updates() -> None:
    images = torch.from_numpy(train_images()).float() / 255.0
    weights = {}
    for resume in (False, True):
        trainable = level_trainable()
        params = list(trainable.parameter_groups()["level0"])
        optimizer = optimizers.Muon(params, lr=1e-2)
        torch.manual_seed(1)
        for step in range(6):
            if resume and step == 3:
                saved = optimizer.state_dict()
                optimizer = optimizers.Muon(params, lr=1e-2)
                optimizer.load_state_dict(saved)
            training.set_gradients(trainable.training_step(images).objectives, {"level0": params}, ["level0"])
            optimizer.step()
        weights[resume] = torch.cat([param.detach().flatten() for param in trainable.parameters()])
    initial = torch.cat([param.detach().flatten() for param in level_trainable().parameters()])
    assert (weights[False] - initial).abs().max() > 1e-3
    assert torch.equal(weights[False], weights[True])


def test_the_loop_gives_matrix_lr_to_muon_only() -> None:
    settings = {"lr": 1e-3, "matrix_lr": 4e-3}
    (muon,) = training.make_optimizers(level_trainable(), {**settings, "optimizer": "muon"}).values()
    assert muon.param_groups[0]["matrix_lr"] == 4e-3
    (rmsprop,) = training.make_optimizers(level_trainable(), {**settings, "optimizer": "rmsprop"}).values()
    assert "matrix_lr" not in rmsprop.param_groups[0]


def test_a_training_job_under_muon_does_not_import_torch_dynamo(tmp_path: Path) -> None:
    """Building a torch.optim optimizer imports torch._dynamo (a second of CPU per job); Muon, the default run's
    optimizer, does not."""
    muon = {**SETTINGS, "optimizer": "muon"}
    script = (
        "import sys, numpy as np, torch\n"
        "from models.lapcvae import LapCVAE, LevelTrainable\n"
        "from training.loop import fit\n"
        "model = LapCVAE(resolution=8, levels=2, latent_dims=[4, 3], kl_weights=[0.1, 1.0], widths=[4, 8],"
        " feature_size=2, m_hidden=6, use_m=True)\n"
        "images = np.random.default_rng(0).integers(0, 256, (8, 3, 8, 8), dtype=np.uint8)\n"
        f"fit(LevelTrainable(model, level=0), images, settings={muon!r}, seed=0, output={str(tmp_path / 'x.pt')!r},"
        " export=model)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "x.pt").is_file()  # it trained
    assert result.stdout.strip().splitlines()[-1] == "False"


class TwoGroups(nn.Module):
    """Objective 'a' depends on both parameters; 'b' has its own objective or none (skipped)."""

    def __init__(self, b_objective: bool):
        super().__init__()
        self.a = nn.Parameter(torch.tensor([-10.0]))
        self.b = nn.Parameter(torch.tensor([1.0]))
        self.b_objective = b_objective
        self.kind, self.config = "toy", {}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"a": [self.a], "b": [self.b]}

    def training_step(self, images: torch.Tensor) -> StepResult:
        loss_a = (self.a * self.b).sum()
        loss_b = self.b.pow(2).sum() if self.b_objective else None
        return StepResult(objectives={"a": loss_a, "b": loss_b}, logs={"a": loss_a.detach()})


@pytest.mark.parametrize("b_objective", [True, False])
def test_each_objective_updates_only_its_group(tmp_path: Path, b_objective: bool) -> None:
    toy = TwoGroups(b_objective)
    settings = {**SETTINGS, "epochs": 1, "batch_size": 4, "grad_clip": None}
    fit(toy, train_images(4), settings=settings, seed=0, output=tmp_path / "toy.pt")  # one step
    assert toy.a.item() < -10.0  # d(a*b)/da = b = 1 > 0: Adam moves a down by lr
    if b_objective:
        # d(b^2)/db = 2 > 0 moves b down; had a*b leaked into b's gradient (-10 + 2 < 0) b would go up.
        assert toy.b.item() == pytest.approx(1.0 - settings["lr"])
    else:
        assert toy.b.item() == 1.0  # a None objective skips the group


def test_rejects_bad_images(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        fit(level_trainable(), train_images().astype(np.float32), settings=SETTINGS, seed=0, output=tmp_path / "x.pt")
    with pytest.raises(ValueError, match="shape"):
        fit(level_trainable(), train_images()[:, :1], settings=SETTINGS, seed=0, output=tmp_path / "x.pt")


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, folder: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    # Different initial weights per rank: the loop must broadcast rank 0's before training.
    trainable = level_trainable(seed=rank)
    fit(trainable, train_images(16), settings={**SETTINGS, "batch_size": 8}, seed=0,
        output=Path(folder) / "level0.pt", export=trainable.model, device="cpu")
    torch.save(trainable.state_dict(), Path(folder) / f"rank{rank}.pt")


def test_two_gloo_processes_end_with_identical_weights(tmp_path: Path) -> None:
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert all(torch.equal(rank0[key], rank1[key]) for key in rank0)
    initial = level_trainable(seed=0).state_dict()
    assert not all(torch.equal(rank0[key], initial[key]) for key in rank0)  # it trained
    saved = load_checkpoint(tmp_path / "level0.pt")  # written once, by rank 0
    assert saved["meta"]["world_size"] == 2


def test_lr_schedule_warms_up_then_decays_to_zero() -> None:
    cosine = {"warmup": 0.1, "decay": "cosine"}
    factors = [training.lr_factor(cosine, step, 100) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)  # 10 warm-up steps
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False)) and factors[-1] < 0.001
    assert training.lr_factor({"decay": "linear"}, 50, 100) == pytest.approx(0.5)
    assert training.lr_factor(None, 50, 100) == 1.0
    with pytest.raises(ValueError, match="decay"):
        training.lr_factor({"decay": "step"}, 0, 10)


class RecordsKLScale(LevelTrainable):
    """Records the KL warm-up factor that each of its training steps computes its loss with."""

    def __init__(self, model: LapCVAE, level: int):
        super().__init__(model, level)
        self.scales: list[float] = []

    def training_step(self, images: torch.Tensor) -> StepResult:
        self.scales.append(self.kl_scale)
        return super().training_step(images)


def test_kl_warmup_rises_linearly_over_its_fraction_of_the_steps_then_holds(tmp_path: Path) -> None:
    assert [training.kl_factor(0.5, step, 8) for step in range(8)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert training.kl_factor(0.0, 0, 8) == 1.0
    data = train_images()  # 12 images, batch 4, 2 epochs: 6 steps, the first 3 warmed up
    trainable = RecordsKLScale(level_trainable().model, 0)
    fit(trainable, data, settings={**SETTINGS, "kl_warmup": 0.5}, seed=3, output=tmp_path / "a.pt",
        export=trainable.model, name="job")
    assert trainable.scales == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0, 1.0, 1.0])
    assert trainable.kl_scale == 1.0  # handed back at full weight
    plain = RecordsKLScale(level_trainable().model, 0)
    fit(plain, data, settings=SETTINGS, seed=3, output=tmp_path / "b.pt", export=plain.model, name="job")
    assert plain.scales == [1.0] * 6
    warmed, unwarmed = (load_checkpoint(tmp_path / name)["state_dict"] for name in ("a.pt", "b.pt"))
    assert any(not torch.equal(warmed[key], unwarmed[key]) for key in warmed)  # a smaller KL weight trained it


def test_a_resumed_scheduled_run_matches_an_uninterrupted_one_bitwise(tmp_path: Path) -> None:
    data = train_images()
    settings = {**SETTINGS, "schedule": {"warmup": 0.25, "decay": "cosine"}, "kl_warmup": 0.5}
    trainable = level_trainable()
    fit(trainable, data, settings=settings, seed=3, output=tmp_path / "a.pt", export=trainable.model, name="job")
    constant = level_trainable()
    fit(constant, data, settings=SETTINGS, seed=3, output=tmp_path / "c.pt", export=constant.model, name="job")
    killed = StopsAtStep(level_trainable().model, 0, stop_at=steps_per_epoch(len(data), 4) + 2)
    with pytest.raises(Interrupted):
        fit(killed, data, settings=settings, seed=3, output=tmp_path / "b.pt", name="job")
    restarted = level_trainable()
    fit(restarted, data, settings=settings, seed=3, output=tmp_path / "b.pt", export=restarted.model, name="job")
    scheduled, resumed = (load_checkpoint(tmp_path / name)["state_dict"] for name in ("a.pt", "b.pt"))
    unscheduled = load_checkpoint(tmp_path / "c.pt")["state_dict"]
    assert all(torch.equal(resumed[key], scheduled[key]) for key in scheduled)
    assert any(not torch.equal(unscheduled[key], scheduled[key]) for key in scheduled)  # the schedule acted


def test_the_schedule_scales_muons_matrix_step_with_the_learning_rate(tmp_path: Path, monkeypatch) -> None:
    """train.schedule decays both of Muon's step sizes alike: the matrices' matrix_lr as well as Adam's lr."""
    rates: list[tuple[float, float]] = []

    class RecordingMuon(optimizers.Muon):
        def step(self) -> None:
            rates.append((self.param_groups[0]["lr"], self.param_groups[0]["matrix_lr"]))
            super().step()

    monkeypatch.setitem(training.OPTIMIZERS, "muon", RecordingMuon)
    data = train_images()
    schedule = {"decay": "linear"}
    settings = {**SETTINGS, "optimizer": "muon", "matrix_lr": 4e-3, "schedule": schedule}
    trainable = level_trainable()
    fit(trainable, data, settings=settings, seed=3, output=tmp_path / "a.pt", export=trainable.model, name="job")
    total = len(rates)
    assert total == settings["epochs"] * steps_per_epoch(len(data), settings["batch_size"])
    for step, (lr, matrix_lr) in enumerate(rates):
        factor = training.lr_factor(schedule, step, total)
        assert lr == pytest.approx(settings["lr"] * factor) and matrix_lr == pytest.approx(4e-3 * factor)
    assert rates[-1][1] < 0.5 * rates[0][1]
