"""The VAE and VAE/GAN baselines: shapes, the VAE's parameter matching, where each loss term's gradient goes,
overfitting a small batch, and VAE/GAN's balancing rule."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch

from baselines.vae import VAE, count_widths, lapcvae_parameter_count, sample_prior, vae_config
from baselines.vaegan import VAEGAN
from core.params import load_params
from training.loop import fit

BALANCE_OFF = {"enabled": False, "margin": 0.35, "equilibrium": 0.68}



def tiny_vae() -> VAE:
    return VAE.from_config({"resolution": 16, "latent_dim": 8, "widths": [8, 16]})


def tiny_vaegan(resolution: int = 16, *, gamma: float = 1e-6, balance: dict | None = None) -> VAEGAN:
    widths = [4, 8, 8, 8, 8][: 4 if resolution == 64 else 5] if resolution >= 64 else [4, 8]
    return VAEGAN.from_config({
        "resolution": resolution, "latent_dim": 8, "widths": widths, "dis_hidden": 8,
        "dis_layer": len(widths) - 1, "gamma": gamma, "balance": balance or BALANCE_OFF,
    })


def smooth_images(n: int, resolution: int) -> torch.Tensor:
    """n distinct, smooth images in [0, 1]: a colour ramp with a per-image direction and palette."""
    generator = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0.0, 1.0, resolution)
    colours = torch.rand(n, 3, 1, 1, generator=generator)
    horizontal = ramp.view(1, 1, 1, -1).expand(n, 1, resolution, resolution)
    vertical = ramp.view(1, 1, -1, 1).expand(n, 1, resolution, resolution)
    mix = torch.linspace(0.0, 1.0, n).view(n, 1, 1, 1)
    return (colours * (mix * horizontal + (1 - mix) * vertical)).clamp(0, 1)  # (n, 3, res, res)


@pytest.mark.parametrize("resolution", [64, 128])
def test_shapes_ranges_and_seeded_samples(resolution: int) -> None:
    torch.manual_seed(0)
    images = torch.rand(2, 3, resolution, resolution)
    for model in (VAE.from_config({"resolution": resolution, "latent_dim": 8,
                                   "widths": [4] * (4 if resolution == 64 else 5)}),
                  tiny_vaegan(resolution)):
        model.train()
        result = model.training_step(images)
        assert all(torch.isfinite(objective) for objective in result.objectives.values())
        model.eval()
        reconstruction = model.reconstruct(images)
        assert reconstruction.shape == images.shape
        samples = model.sample(3, seed=7)
        assert samples.shape == (3, 3, resolution, resolution)
        for output in (reconstruction, samples):
            assert output.min() >= 0.0 and output.max() <= 1.0
        assert torch.equal(samples, model.sample(3, seed=7))
        with torch.no_grad():  # another seed decodes other latents (compared before clamping to [0, 1])
            decoded = [model.decoder(sample_prior(3, model.latent_dim, seed, torch.device("cpu"))) for seed in (7, 8)]
        assert not torch.allclose(*decoded)
        rebuilt = type(model).from_config(model.config)
        rebuilt.load_state_dict(model.state_dict())
        assert torch.equal(rebuilt.eval().sample(3, seed=7), samples)


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot be halved"):
        VAE.from_config({"resolution": 24, "latent_dim": 8, "widths": [4, 4, 4, 4]})
    with pytest.raises(ValueError, match="dis_layer"):
        VAEGAN.from_config({**tiny_vaegan().config, "dis_layer": 2})


@pytest.mark.parametrize("overrides", [(), ("config/smoke.yaml",), ("config/paper.yaml",)])
def test_vae_parameters_match_lapcvae(overrides: tuple[str, ...]) -> None:
    params = load_params(*overrides)
    for resolution in params["data"]["resolutions"]:
        config = vae_config(params, resolution)
        assert config["latent_dim"] == sum(params["lapcvae"][str(resolution)]["latent_dims"])
        vae_count = count_widths(resolution, config["latent_dim"], config["widths"])
        lapcvae_count = lapcvae_parameter_count(params, resolution)
        assert abs(vae_count - lapcvae_count) <= 0.1 * lapcvae_count, (resolution, vae_count, lapcvae_count)


def gradients(objective: torch.Tensor, parameters: list[torch.nn.Parameter]) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad(objective, parameters, retain_graph=True, allow_unused=True))


def reaches(objective: torch.Tensor, parameters: list[torch.nn.Parameter]) -> bool:
    return any(grad is not None and grad.abs().sum() > 0 for grad in gradients(objective, parameters))


def test_vaegan_gradients_go_only_where_they_should() -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 3, 16, 16)
    # gamma = 1: the decoder's objective is the Dis_l term alone; gamma = 0: the GAN term alone.
    feature_model = tiny_vaegan(gamma=1.0)
    groups = feature_model.parameter_groups()
    objectives = feature_model.training_step(images).objectives
    assert reaches(objectives["encoder"], groups["encoder"])
    assert reaches(objectives["decoder"], groups["decoder"])
    assert reaches(objectives["discriminator"], groups["discriminator"])
    assert not reaches(objectives["encoder"], groups["discriminator"])  # KL + Dis_l never train D
    assert not reaches(objectives["decoder"], groups["discriminator"])  # Dis_l alone

    gan_model = tiny_vaegan(gamma=0.0)
    groups = gan_model.parameter_groups()
    objectives = gan_model.training_step(images).objectives
    assert reaches(objectives["decoder"], groups["decoder"])  # the decoder learns to fool D ...
    assert not reaches(objectives["decoder"], groups["encoder"])  # ... but the GAN term never reaches the encoder
    assert not reaches(objectives["discriminator"], groups["encoder"])


@pytest.mark.parametrize("gamma", [1e-6, 0.5, 1.0])
def test_vaegan_shared_backward_gives_each_group_its_own_objectives_gradient(gamma: float) -> None:
    """Encoder and decoder take their gradients from one objective tensor (one backward pass, the loop's
    `_update`): each group must get exactly what its own objective (kl_weight KL + Dis_l for the encoder,
    gamma Dis_l - (1 - gamma) L_GAN for the decoder) gives it in a pass of its own."""
    images = smooth_images(4, 16)
    model = VAEGAN.from_config({**tiny_vaegan(gamma=gamma).config, "pixel_weight": 1.0, "kl_weight": 0.3})
    groups = model.parameter_groups()
    found = {}
    for shared in (True, False):
        model.shared_backward = shared
        torch.manual_seed(1)  # the same reparameterisation and prior noise in both passes
        objectives = model.training_step(images).objectives
        assert (objectives["encoder"] is objectives["decoder"]) == shared
        found[shared] = {group: gradients(objectives[group], groups[group]) for group in ("encoder", "decoder")}
    for group in ("encoder", "decoder"):
        for one_pass, own_pass in zip(found[True][group], found[False][group], strict=True):
            assert own_pass is not None and own_pass.abs().sum() > 0
            torch.testing.assert_close(one_pass, own_pass, rtol=1e-4, atol=1e-6)


def fit_history(model: torch.nn.Module, images: torch.Tensor, steps: int, lr: float,
                folder: Path) -> list[dict[str, float]]:
    """Train with the shared loop, one full batch per epoch, and return its per-step log."""
    settings = {"lr": lr, "batch_size": len(images), "epochs": steps, "log_every": 1, "bf16": False,
                "grad_clip": None}
    pixels = (images * 255).round().to(torch.uint8).numpy()  # (N, 3, H, W) uint8, as `prepare` writes
    fit(model, pixels, settings=settings, seed=0, output=folder / "model.pt", device="cpu")
    with (folder / "model.log.csv").open(newline="") as handle:
        return [{key: float(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def test_vae_overfits_a_small_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_vae()
    history = fit_history(model, smooth_images(4, 16), 150, 3e-3, tmp_path)
    assert history[-1]["loss"] < history[0]["loss"] / 10


def test_vaegan_feature_loss_falls_against_a_fixed_discriminator(tmp_path: Path) -> None:
    # Dis_l is measured in the discriminator's moving feature space; hold the discriminator still (the balancing
    # rule skips it whenever its BCE is below 99.9) and let the decoder see Dis_l alone (gamma = 1), so that the
    # feature loss itself must fall.
    torch.manual_seed(0)
    model = VAEGAN.from_config({
        "resolution": 16, "latent_dim": 8, "widths": [16, 32], "dis_hidden": 8, "dis_layer": 1, "gamma": 1.0,
        "balance": {"enabled": True, "margin": 0.1, "equilibrium": 100.0},
    })
    history = fit_history(model, smooth_images(4, 16), 60, 3e-3, tmp_path)
    assert history[-1]["dis_l"] < history[0]["dis_l"] / 3


def test_vaegan_reconstructions_improve_in_adversarial_training(tmp_path: Path) -> None:
    # The original setting: gamma = 1e-6 and the authors' balancing rule, discriminator training too.
    torch.manual_seed(0)
    model = tiny_vaegan(balance={"enabled": True, "margin": 0.35, "equilibrium": 0.68})
    images = smooth_images(4, 16)
    initial_error = (model.eval().reconstruct(images) - images).pow(2).mean()
    history = fit_history(model, images, 250, 3e-3, tmp_path)
    final_error = (model.eval().reconstruct(images) - images).pow(2).mean()
    assert final_error < initial_error / 2
    assert all(math.isfinite(step["gan"]) for step in history)


@pytest.mark.parametrize(("balance", "skipped"), [
    ({"enabled": True, "margin": 0.1, "equilibrium": 100.0}, "discriminator"),  # every BCE is below 99.9
    ({"enabled": True, "margin": 0.0, "equilibrium": 0.0}, "decoder"),  # every BCE is above 0
])
def test_balancing_rule_skips_the_right_update(balance: dict, skipped: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = tiny_vaegan(balance=balance)
    images = smooth_images(4, 16)
    assert model.training_step(images).objectives[skipped] is None
    before = {name: [p.detach().clone() for p in params] for name, params in model.parameter_groups().items()}
    fit_history(model, images, 1, 1e-2, tmp_path)
    for name, params in model.parameter_groups().items():
        unchanged = all(torch.equal(old, new) for old, new in zip(before[name], params, strict=True))
        assert unchanged == (name == skipped), name


def test_balancing_rule_updates_both_when_both_would_be_skipped() -> None:
    # margin < 0 puts every BCE both below equilibrium - margin and above equilibrium + margin.
    model = tiny_vaegan(balance={"enabled": True, "margin": -100.0, "equilibrium": 0.68})
    objectives = model.training_step(smooth_images(4, 16)).objectives
    assert objectives["decoder"] is not None and objectives["discriminator"] is not None


@pytest.mark.parametrize("kl_weight", [0.0, 0.01, 1.0])
def test_vae_loss_is_pixel_sse_plus_weighted_kl_in_nats(kl_weight: float) -> None:
    """The scale every VAE-family loss shares: SSE over [0, 1] pixels per image + kl_weight * KL (nats), batch mean."""
    torch.manual_seed(0)
    model = VAE.from_config({"resolution": 16, "latent_dim": 8, "widths": [8, 16], "kl_weight": kl_weight})
    images = smooth_images(4, 16)
    torch.manual_seed(1)
    loss = model.training_step(images).objectives["vae"]
    torch.manual_seed(1)  # the same reparameterisation noise, by hand
    mean, log_var = model.encoder(images)
    decoded = model.decoder(mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape))
    sse = ((decoded - images) ** 2).sum(dim=(1, 2, 3))  # (4,)
    kl = 0.5 * (mean**2 + log_var.exp() - log_var - 1).sum(dim=1)  # (4,) KL(N(mean, var) || N(0, I)) in nats
    assert loss.item() == pytest.approx((sse + kl_weight * kl).mean().item(), rel=1e-5)
    assert torch.allclose(model.rate(images), kl, rtol=1e-5)  # evaluate's rate is the same KL, per image


def test_paper_vaegan_trains_with_rmsprop_and_weight_decay() -> None:
    from training.loop import make_optimizers

    params = load_params("config/paper.yaml")
    settings = {**params["train"], **params["vaegan"]["64"]["train"]}
    optimizers = make_optimizers(tiny_vaegan(), settings)
    assert set(optimizers) == {"encoder", "decoder", "discriminator"}
    for optimizer in optimizers.values():
        assert isinstance(optimizer, torch.optim.RMSprop)
        assert optimizer.defaults["weight_decay"] == 1e-5 and optimizer.defaults["lr"] == 0.025 / 64
    assert params["vaegan"]["64"]["discriminate_reconstructions"] is False


def test_vaegan_pixel_weight_adds_the_pixel_sse_to_the_reconstruction_terms() -> None:
    images = smooth_images(4, 16)
    losses = {}
    for pixel_weight in (0.0, 1.0):
        torch.manual_seed(0)
        model = VAEGAN.from_config({**tiny_vaegan().config, "pixel_weight": pixel_weight})
        torch.manual_seed(1)
        losses[pixel_weight] = model.training_step(images).logs["dis_l"].item()
    torch.manual_seed(1)  # the same reparameterisation noise, by hand
    mean, log_var = model.encoder(images)
    reconstructions = model.decoder(mean + torch.exp(0.5 * log_var) * torch.randn(mean.shape))
    sse = ((reconstructions - images) ** 2).sum(dim=(1, 2, 3)).mean().item()
    assert losses[1.0] - losses[0.0] == pytest.approx(sse, rel=1e-4)
