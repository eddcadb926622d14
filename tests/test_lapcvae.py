"""LapCVAE (models/lapcvae.py): shapes at the paper's sizes, the KL, learning, sampling, partial sampling."""

from __future__ import annotations

import pytest
import torch
from conftest import with_random_band_outputs
from torch.distributions import Normal, kl_divergence

from core.params import load_params
from models.blocks import kl_diagonal_gaussians
from models.lapcvae import LapCVAE, LevelTrainable
from models.pyramid import downsample, laplacian_pyramid


def tiny_model(use_m: bool = True, trained_levels: int | None = None, seed: int = 0,
               untrained_outputs: bool = False) -> LapCVAE:
    """A 3-level 16 px model: levels of 16, 8 and 4 px; its band decoders' output layers random (as after training)
    unless untrained_outputs."""
    torch.manual_seed(seed)
    model = LapCVAE(resolution=16, levels=3, latent_dims=[6, 5, 4], kl_weights=[0.01, 0.1, 1.0], widths=[4, 8],
                    feature_size=2, m_hidden=8, use_m=use_m, trained_levels=trained_levels)
    return model if untrained_outputs else with_random_band_outputs(model)


def images(n: int, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("resolution, expected", [(64, 6.55e7), (128, 1.66e8)])
def test_paper_configuration_shapes_and_parameter_count(resolution: int, expected: float) -> None:
    section = load_params("config/paper.yaml")["lapcvae"][str(resolution)]
    with torch.device("meta"):  # shapes and counts without allocating 0.7 GB
        model = LapCVAE.from_params(section, resolution, use_m=True).eval()
        x = torch.empty(2, 3, resolution, resolution)
        latents = model.encode(x)
        reconstruction = model.reconstruct(x)
    assert [tuple(z.shape) for z in latents] == [(2, dim) for dim in section["latent_dims"]]
    assert reconstruction.shape == x.shape
    for k, size in enumerate(model.sizes):
        high = model.decode_level(k, [z[:1] for z in latents[k:]])
        assert high.shape == (1, 3, size, size)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - expected) / expected < 0.03, count  # Table 1


def test_kl_matches_torch_distributions() -> None:
    generator = torch.Generator().manual_seed(1)
    mean_q, mean_p = torch.randn(5, 7, generator=generator), torch.randn(5, 7, generator=generator)
    log_var_q, log_var_p = torch.randn(5, 7, generator=generator), torch.randn(5, 7, generator=generator)
    expected = kl_divergence(Normal(mean_q, (0.5 * log_var_q).exp()), Normal(mean_p, (0.5 * log_var_p).exp()))
    torch.testing.assert_close(kl_diagonal_gaussians(mean_q, log_var_q, mean_p, log_var_p), expected.sum(1))
    standard = kl_divergence(Normal(mean_q, (0.5 * log_var_q).exp()), Normal(0.0, 1.0)).sum(1)
    torch.testing.assert_close(kl_diagonal_gaussians(mean_q, log_var_q), standard)


def test_one_level_overfits_a_small_batch() -> None:
    config = {**tiny_model().config, "trained_levels": 2, "kl_weights": [0.01, 0.001, 1.0], "widths": [16, 32]}
    trainable = LevelTrainable(LapCVAE.from_config(config), level=1).train()
    optimizer = torch.optim.Adam(trainable.parameter_groups()["level1"], lr=1e-2)
    batch = images(8)
    reconstruction = []
    for _ in range(100):
        result = trainable.training_step(batch)
        optimizer.zero_grad()
        result.objectives["level1"].backward()
        optimizer.step()
        reconstruction.append(result.logs["recon"].item())
    # The first step's term is the SSE of predicting no detail (the decoder starts at zero); on random images h_1
    # is noise the coarser latents cannot predict, so falling below a tenth of it means the latent carries it.
    assert sum(reconstruction[-5:]) / 5 < reconstruction[0] / 10


def test_band_decoders_start_by_predicting_no_detail() -> None:
    """Levels k < K start at h_k = 0 (their reconstruction term is then sum h_k^2); the coarsest stays random."""
    model = tiny_model(untrained_outputs=True)
    latents = [torch.randn(4, dim) for dim in model.config["latent_dims"]]
    for k in range(model.coarsest):
        assert torch.equal(model.decode_level(k, latents[k:]), torch.zeros(4, 3, model.sizes[k], model.sizes[k]))
    assert model.decode_level(model.coarsest, latents[-1:]).abs().amin() > 0
    model.decode_level(0, latents).sum().backward()
    assert model.level(0).decoder.to_image.weight.grad.abs().sum() > 0  # it learns from the first step


def test_coarsest_code_in_training_does_not_depend_on_the_batch() -> None:
    """The coarsest encoder has no batch norm, so an image's code while training is its own; the finer encoders
    keep batch norm, whose batch statistics make the code move with the other images of the batch."""
    model = tiny_model().train()
    x, first, second = images(1, seed=0), images(3, seed=1), images(3, seed=2)
    for k in range(model.levels):
        inputs = [laplacian_pyramid(torch.cat([x, others]), model.levels)[k] for others in (first, second)]
        upsampled = [None if k == model.coarsest else torch.zeros_like(h) for h in inputs]
        codes = [model.encode_level(k, h, u)[0][0] for h, u in zip(inputs, upsampled, strict=True)]
        assert torch.equal(codes[0], codes[1]) == (k == model.coarsest), k


def test_training_level_freezes_coarser_levels() -> None:
    model = LapCVAE.from_config({**tiny_model().config, "trained_levels": 2})
    trainable = LevelTrainable(model, level=1).train()
    assert not model.level(2).training and model.level(1).training
    coarse_before = {k: v.clone() for k, v in model.level(2).state_dict().items()}
    loss = trainable.training_step(images(4)).objectives["level1"]
    loss.backward()
    assert all(p.grad is None for p in model.level(2).parameters())
    assert all(torch.equal(coarse_before[k], v) for k, v in model.level(2).state_dict().items())
    assert model.level(1).prior_net.mean[0].weight.grad is not None  # M_1 trains with its level


@pytest.mark.parametrize("use_m", [True, False])
def test_sample_is_deterministic_for_a_seed_and_in_range(use_m: bool) -> None:
    model = tiny_model(use_m).eval()
    first, again, other = model.sample(4, seed=3), model.sample(4, seed=3), model.sample(4, seed=4)
    assert first.shape == (4, 3, 16, 16)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.min() >= 0 and first.max() <= 1


def test_partial_sample_with_every_level_fixed_is_the_reconstruction() -> None:
    model = tiny_model().eval()
    x = images(1)
    samples, base = model.partial_sample(x, fixed_levels=3, n=3, seed=0)
    reconstruction = model.reconstruct(x)
    assert torch.equal(base, reconstruction)
    assert all(torch.equal(sample[None], reconstruction) for sample in samples)


@pytest.mark.parametrize("use_m", [True, False])
def test_partial_sample_keeps_the_fixed_coarse_levels(use_m: bool) -> None:
    model = tiny_model(use_m).eval()
    x = images(1, seed=5)
    composed = model.partial_levels(x, fixed_levels=2, n=4, seed=1)  # [x_0, x_1, x_2], (4, 3, s, s) each
    for level in (1, 2):  # the fixed levels produce the same coarse images in every sample
        assert all(torch.equal(composed[level][0], image) for image in composed[level])
    assert not torch.equal(composed[0][0], composed[0][1])  # the finest level is sampled
    samples, base = model.partial_sample(x, fixed_levels=2, n=4, seed=1)
    assert torch.equal(samples, model.to_full_size(composed[0]).clamp(0, 1))
    assert torch.equal(base, model.to_full_size(composed[1][:1]).clamp(0, 1))
    # The fixed coarse latents are x's own: the base is the reconstruction by the coarse levels alone.
    coarse_only = LapCVAE.from_config({**model.config, "trained_levels": 2})
    coarse_only.load_state_dict(model.state_dict(), strict=False)
    torch.testing.assert_close(base, coarse_only.eval().reconstruct(x))
    assert downsample(samples).shape == (4, 3, 8, 8)


def test_without_m_has_no_m_parameters() -> None:
    with_m, without_m = tiny_model(True), tiny_model(False)
    m_names = [name for name, _ in with_m.named_parameters() if "prior_net" in name]
    assert m_names and not [name for name, _ in without_m.named_parameters() if "prior_net" in name]
    m_count = sum(p.numel() for name, p in with_m.named_parameters() if "prior_net" in name)
    total = sum(p.numel() for p in with_m.parameters()) - sum(p.numel() for p in without_m.parameters())
    assert total == m_count
    assert without_m.variant == "lapcvae_nom"


def test_encode_decode_round_trip_is_the_reconstruction() -> None:
    model = tiny_model().eval()
    x = images(3)
    with torch.no_grad():
        latents = model.encode(x)
        assert [z.shape[1] for z in latents] == [6, 5, 4]
        torch.testing.assert_close(model.decode(latents), model.reconstruct(x))


def test_config_round_trip_and_bad_input() -> None:
    model = tiny_model()
    rebuilt = LapCVAE.from_config(model.config)
    assert rebuilt.config == model.config
    with pytest.raises(ValueError, match="one image"):
        model.eval().partial_sample(images(2), fixed_levels=1, n=2, seed=0)
    with pytest.raises(ValueError, match="fixed_levels"):
        model.partial_sample(images(1), fixed_levels=4, n=2, seed=0)
    with pytest.raises(ValueError, match="trained_levels"):
        LapCVAE.from_config({**model.config, "trained_levels": 4})


@pytest.mark.parametrize("use_m", [True, False])
def test_rate_sums_every_levels_kl_against_its_prior(use_m: bool) -> None:
    model = tiny_model(use_m=use_m).eval()
    x = images(3)
    coarsest_only = tiny_model(use_m=use_m, trained_levels=1).eval()
    coarsest_only.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        rate, coarse_rate = model.rate(x), coarsest_only.rate(x)  # (3,) each
        b_K = x
        for _ in range(model.coarsest):
            b_K = downsample(b_K)
        mean, log_var = model.encode_level(model.coarsest, b_K, None)
    assert torch.allclose(coarse_rate, kl_diagonal_gaussians(mean, log_var), rtol=1e-5)  # level K: N(0, I)
    assert (rate > coarse_rate).all()  # finer levels add their own KL


@pytest.mark.parametrize("feature_size, depths", [(2, [2, 2, 1]), (4, [2, 1, 1]), (8, [1, 1, 1])])
def test_levels_halve_down_to_feature_size_and_smaller_levels_keep_one_block(feature_size: int,
                                                                            depths: list[int]) -> None:
    from models.lapcvae import level_depth

    # 16, 8 and 4 px levels with two widths: a level no larger than feature_size still encodes with one block.
    assert [level_depth(size, feature_size, max_blocks=2) for size in (16, 8, 4)] == depths
    model = LapCVAE(resolution=16, levels=3, latent_dims=[6, 5, 4], kl_weights=[0.01, 0.1, 1.0], widths=[4, 8],
                    feature_size=feature_size, m_hidden=8, use_m=True)
    x = images(2)
    assert model.reconstruct(x).shape == x.shape
    with pytest.raises(ValueError, match="feature_size"):
        level_depth(16, 3, max_blocks=2)
