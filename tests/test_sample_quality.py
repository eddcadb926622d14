"""Sample quality without downloads (eval/sample_quality.py) on the project's synthetic faces: held-out real faces
score best, and blur, noise, a colour shift, one repeated face and the mean face score worse, in the expected order."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.params import load_params
from data.faces import draw_face
from data.prepare import resize
from eval.sample_quality import (
    SampleEmbedding,
    chunk_seed,
    draw_samples,
    fit_embedding,
    frechet_distance,
    knn_radii,
    precision_recall,
    repeated,
    sample_metrics,
    training_reference,
)

SIZE = 32
SETTINGS = {"k": 3, "dims": 32, "layout_size": 8, "detail_size": 4, "fit_images": 20000}


def faces(start: int, count: int) -> np.ndarray:
    """(count, 3, SIZE, SIZE) uint8 synthetic faces, cropped and resized as `lapcvae prepare` does."""
    crop = load_params()["data"]["crop"]
    top, left, side = crop["top"], crop["left"], crop["size"]
    crops = np.stack([draw_face(0, index)[0][top:top + side, left:left + side]
                      for index in range(start, start + count)])  # (N, side, side, 3)
    return resize(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), SIZE).numpy()


@pytest.fixture(scope="module")
def study() -> dict[str, np.ndarray]:
    """Training faces (the embedding's), the test split and held-out real faces scored as 'samples'."""
    return {"train": faces(0, 300), "test": faces(300, 120), "held_out": faces(420, 120)}


@pytest.fixture(scope="module")
def embedding(study) -> SampleEmbedding:
    return fit_embedding(study["train"], SETTINGS, seed=0)


def blurred(images: np.ndarray, sigma: float) -> np.ndarray:
    radius = int(3 * sigma) + 1
    taps = torch.exp(-torch.arange(-radius, radius + 1).double() ** 2 / (2 * sigma**2))
    taps = (taps / taps.sum()).float()
    x = F.pad(torch.from_numpy(images).float(), (radius,) * 4, mode="reflect")
    x = F.conv2d(x, taps.view(1, 1, 1, -1).repeat(3, 1, 1, 1), groups=3)
    x = F.conv2d(x, taps.view(1, 1, -1, 1).repeat(3, 1, 1, 1), groups=3)
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def noisy(images: np.ndarray, grey_levels: float) -> np.ndarray:
    noise = np.random.default_rng(1).normal(0.0, grey_levels, images.shape)
    return np.clip(images + noise, 0, 255).round().astype(np.uint8)


def colour_shifted(images: np.ndarray, grey_levels: int) -> np.ndarray:
    """Redder and less blue by `grey_levels`: a colour cast, structure and detail untouched."""
    shifted = images.astype(np.int32)
    shifted[:, 0] += grey_levels
    shifted[:, 2] -= grey_levels
    return np.clip(shifted, 0, 255).astype(np.uint8)


def score(embedding: SampleEmbedding, study, generated: np.ndarray) -> dict:
    return sample_metrics(embedding, study["test"], generated, SETTINGS["k"])


def test_held_out_faces_score_best_and_every_degraded_set_worse(study, embedding) -> None:
    real = score(embedding, study, study["held_out"])
    assert real["sample_precision"] > 0.8 and real["sample_recall"] > 0.8
    assert real["sample_quality_test_images"] == 120 and real["sample_quality_generated"] == 120
    mean_face = np.round(study["train"].mean(axis=0)).astype(np.uint8)
    degraded = {
        "blur": blurred(study["held_out"], 1.0),
        "noise": noisy(study["held_out"], 8.0),
        "colour shift": colour_shifted(study["held_out"], 40),
        "one repeated face": repeated(study["held_out"][0], 120),
        "mean face": repeated(mean_face, 120),
    }
    for name, images in degraded.items():
        result = score(embedding, study, images)
        assert result["fd_embedding"] > 1.5 * real["fd_embedding"], name
        worst = min(result["sample_precision"], result["sample_recall"])
        assert worst < min(real["sample_precision"], real["sample_recall"]) - 0.1, name


def test_stronger_blur_gives_a_larger_frechet_distance_and_lower_recall(study, embedding) -> None:
    results = [score(embedding, study, study["held_out"] if sigma == 0 else blurred(study["held_out"], sigma))
               for sigma in (0, 0.7, 1.0, 2.0)]
    distances = [result["fd_embedding"] for result in results]
    recalls = [result["sample_recall"] for result in results]
    assert distances == sorted(distances) and distances[-1] > 5 * distances[0]
    assert recalls == sorted(recalls, reverse=True) and recalls[-1] < 0.2


def test_noise_and_colour_shift_grow_with_their_strength(study, embedding) -> None:
    for degrade, strengths in ((noisy, (8.0, 20.0)), (colour_shifted, (20, 40))):
        weak, strong = (score(embedding, study, degrade(study["held_out"], level)) for level in strengths)
        assert strong["fd_embedding"] > weak["fd_embedding"], degrade.__name__
        assert strong["sample_recall"] < weak["sample_recall"], degrade.__name__


def test_one_repeated_image_has_no_recall_and_the_mean_face_scores_worst(study, embedding) -> None:
    one_face = score(embedding, study, repeated(study["held_out"][0], 120))
    assert one_face["sample_recall"] <= 0.01  # its k-NN balls have radius 0
    assert one_face["sample_precision"] in (0.0, 1.0)  # all copies in or all out of the real manifold
    mean_face = score(embedding, study, repeated(np.round(study["train"].mean(axis=0)).astype(np.uint8), 120))
    assert mean_face["sample_precision"] <= 0.01 and mean_face["sample_recall"] <= 0.01
    assert mean_face["fd_embedding"] > max(score(embedding, study, blurred(study["held_out"], 1.0))["fd_embedding"],
                                           one_face["fd_embedding"] * 0.9)


def test_training_images_as_reference_score_like_held_out_faces(study, embedding) -> None:
    reference = training_reference(study["train"], 120, seed=0)
    assert len(reference) == 120 and len(np.unique(reference.reshape(120, -1), axis=0)) == 120
    result, held_out = score(embedding, study, reference), score(embedding, study, study["held_out"])
    for key in ("sample_precision", "sample_recall"):
        assert result[key] > 0.7 and abs(result[key] - held_out[key]) < 0.15, key
    assert result["fd_embedding"] < 1.5 * held_out["fd_embedding"]
    assert len(training_reference(study["train"], 1000, seed=0)) == 300  # never more than the split holds


def test_frechet_distance_of_gaussian_sets() -> None:
    points = np.random.default_rng(0).normal(size=(500, 6))
    assert frechet_distance(points, points.copy()) == pytest.approx(0.0, abs=1e-9)
    offset = np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0])
    assert frechet_distance(points, points + offset) == pytest.approx(offset @ offset, rel=1e-9)
    # Scaling a set by 2 (covariance S -> 4 S): tr(S + 4S - 2 * 2S) = tr(S), plus the moved mean.
    scaled = points * 2.0
    expected = np.trace(np.cov(points, rowvar=False)) + np.sum(points.mean(0) ** 2)
    assert frechet_distance(points, scaled) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="raise eval.samples"):
        frechet_distance(points, points[:1])


def test_knn_radii_and_precision_recall_against_brute_force() -> None:
    rng = np.random.default_rng(1)
    real, generated = rng.normal(size=(40, 3)), rng.normal(0.5, 1.0, size=(30, 3))
    distances = np.linalg.norm(real[:, None] - real[None], axis=-1) + np.diag(np.full(40, np.inf))
    np.testing.assert_allclose(knn_radii(real, 3), np.sort(distances, axis=1)[:, 2], rtol=1e-9)
    to_real = np.linalg.norm(generated[:, None] - real[None], axis=-1)  # (30, 40)
    to_generated = to_real.T  # (40, 30)
    precision = (to_real <= knn_radii(real, 3)[None]).any(axis=1).mean()
    recall = (to_generated <= knn_radii(generated, 3)[None]).any(axis=1).mean()
    assert precision_recall(real, generated, 3) == pytest.approx((precision, recall))
    assert precision_recall(real, real.copy(), 3) == (1.0, 1.0)
    with pytest.raises(ValueError, match="eval.sample_quality.k"):
        knn_radii(real[:3], 3)


def test_the_embedding_is_fitted_on_training_images_and_saved_exactly(study, embedding, tmp_path) -> None:
    train_embedded = embedding.embed(study["train"])
    assert train_embedded.shape == (300, SETTINGS["dims"])
    np.testing.assert_allclose(train_embedded.mean(axis=0), 0.0, atol=1e-9)  # centred on the training split
    np.testing.assert_allclose(train_embedded.var(axis=0, ddof=1), embedding.variance, rtol=1e-6)
    assert np.all(np.diff(embedding.variance) <= 0)  # largest variance first
    loaded = SampleEmbedding.load(embedding.with_test_split(study["test"]).save(tmp_path / "sample_embedding.npz"),
                                  SIZE)
    np.testing.assert_array_equal(loaded.embed(study["test"]), embedding.embed(study["test"]))
    # The stored test embedding serves that split only; other images are embedded afresh.
    assert loaded.embed_test(study["test"]) is loaded.test_embedded
    np.testing.assert_array_equal(loaded.test_embedded, embedding.embed(study["test"]))
    np.testing.assert_array_equal(loaded.embed_test(study["held_out"]), embedding.embed(study["held_out"]))
    changed = study["test"].copy()
    changed[0, 0, 0, 0] ^= 1
    assert loaded.embed_test(changed) is not loaded.test_embedded
    with pytest.raises(ValueError, match="not 64"):
        SampleEmbedding.load(tmp_path / "sample_embedding.npz", 64)
    with pytest.raises(FileNotFoundError, match="sample-embedding"):
        SampleEmbedding.load(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="too small"):
        fit_embedding(study["train"][:, :, :4, :4], SETTINGS, seed=0)


class SeededNoise(torch.nn.Module):
    """sample(n, seed): uniform noise images from `seed`, as a GenerativeModel's prior samples."""

    def sample(self, n: int, seed: int) -> torch.Tensor:
        return torch.rand(n, 3, 4, 4, generator=torch.Generator().manual_seed(seed))


def test_samples_are_drawn_in_batches_with_the_same_seeds_for_every_model() -> None:
    model = SeededNoise()
    samples = draw_samples(model.sample, 10, batch_size=4, seed=7)
    assert samples.shape == (10, 3, 4, 4) and samples.dtype == np.uint8
    first = np.round(model.sample(4, seed=7).numpy() * 255).astype(np.uint8)
    np.testing.assert_array_equal(samples[:4], first)  # the first batch is model.sample(batch, seed)'s
    np.testing.assert_array_equal(samples, draw_samples(model.sample, 10, batch_size=4, seed=7))
    assert len({chunk_seed(7, chunk) for chunk in range(3)} | {chunk_seed(8, chunk) for chunk in range(3)}) == 6
    assert not np.array_equal(samples[:2], samples[4:6])  # every batch draws its own latents
