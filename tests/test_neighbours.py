"""Exact chunked nearest-neighbour search against a brute-force numpy search, and the `neighbours` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from eval.neighbours import nearest_neighbours
from workflow.commands.evaluate import neighbours_main


def brute_force(queries: np.ndarray, train: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every query against every training image in int64; order by (distance, index)."""
    flat_queries = queries.reshape(len(queries), -1).astype(np.int64)
    flat_train = train.reshape(len(train), -1).astype(np.int64)
    squared = ((flat_queries[:, None, :] - flat_train[None, :, :]) ** 2).sum(axis=2)  # (Q, N)
    order = np.stack([np.lexsort((np.arange(len(train)), row))[:k] for row in squared])
    return np.take_along_axis(squared, order, axis=1) / flat_queries.shape[1], order


def random_images(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


@pytest.mark.parametrize("chunk", [1, 7, 16, 100])
def test_chunked_search_equals_brute_force(chunk):
    train, queries = random_images(41, 6, seed=0), random_images(5, 6, seed=1)
    distances, indices = nearest_neighbours(queries, train, k=4, chunk=chunk)
    expected_distances, expected_indices = brute_force(queries, train, k=4)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(distances, expected_distances)  # exact, not approximately


def test_exact_ties_go_to_the_lower_index_across_chunks():
    train = random_images(30, 4, seed=2)
    train[[3, 12, 25]] = train[20]  # four identical training images in different chunks of 8
    queries = np.stack([train[20], train[20] // 2])
    distances, indices = nearest_neighbours(queries, train, k=5, chunk=8)
    np.testing.assert_array_equal(indices[0, :4], [3, 12, 20, 25])
    np.testing.assert_array_equal(distances[0, :4], 0.0)
    expected_distances, expected_indices = brute_force(queries, train, k=5)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(distances, expected_distances)


def test_search_reads_a_memory_mapped_training_array(tmp_path):
    train = random_images(50, 8, seed=3)
    np.save(tmp_path / "train.npy", train)
    mapped = np.load(tmp_path / "train.npy", mmap_mode="r")
    queries = random_images(3, 8, seed=4)
    _, indices = nearest_neighbours(queries, mapped, k=2, chunk=16)
    np.testing.assert_array_equal(indices, brute_force(queries, train, k=2)[1])


def test_search_rejects_float_images_and_bad_k():
    train = random_images(4, 4, seed=5)
    with pytest.raises(ValueError, match="uint8"):
        nearest_neighbours(train.astype(np.float32), train, k=1, chunk=2)
    with pytest.raises(ValueError, match="between 1 and"):
        nearest_neighbours(train, train, k=5, chunk=2)


def test_neighbours_command_writes_tables_summary_and_figure(tmp_path: Path):
    size, k, n_samples = 16, 3, 4
    train, test = random_images(40, size, seed=6), random_images(12, size, seed=7)
    np.save(tmp_path / "train.npy", train)
    np.save(tmp_path / "test.npy", test)
    memorising = train[[5, 9, 5, 30, 2]]  # a "model" whose samples are training images
    for model, samples in {"lapcvae": memorising, "vae": random_images(5, size, seed=8)}.items():
        (tmp_path / "eval" / str(size) / model).mkdir(parents=True)
        np.save(tmp_path / "eval" / str(size) / model / "samples.npy", samples)
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"eval": {"neighbours": {"samples": n_samples, "k": k, "chunk": 16,
                                                                "figure_rows": 2}}}))
    out_dir, figure = tmp_path / "neighbours", tmp_path / "figures" / "fig6_neighbours_16.png"
    samples = [str(tmp_path / "eval" / str(size) / model / "samples.npy") for model in ("lapcvae", "vae")]
    neighbours_main(["--params", str(override), "--res", str(size), "--samples", *samples, "--models", "lapcvae",
                     "vae", "--train", str(tmp_path / "train.npy"), "--test", str(tmp_path / "test.npy"),
                     "--out-dir", str(out_dir), "--figure", str(figure)])

    lapcvae = pd.read_csv(out_dir / "16_lapcvae.csv")
    assert list(lapcvae.columns) == ["sample", "rank", "train_index", "mse"]
    nearest = lapcvae[lapcvae["rank"] == 1]
    assert nearest["train_index"].tolist() == [5, 9, 5, 30] and (nearest["mse"] == 0).all()
    reference = pd.read_csv(out_dir / "16_test_reference.csv")
    expected_distances, expected_indices = brute_force(test[:n_samples], train, k)
    np.testing.assert_array_equal(reference["train_index"].to_numpy().reshape(n_samples, k), expected_indices)
    np.testing.assert_allclose(reference["mse"].to_numpy().reshape(n_samples, k), expected_distances)

    summary = pd.read_csv(out_dir / "16_summary.csv").set_index("model")
    assert set(summary.index) == {"lapcvae", "vae", "test_reference"}
    assert summary.loc["lapcvae", "median_ratio_to_test_reference"] == 0.0  # memorised
    assert summary.loc["lapcvae", "below_test_reference_min"] == n_samples
    assert summary.loc["test_reference", "median_ratio_to_test_reference"] == 1.0
    assert figure.stat().st_size > 1000


def test_neighbours_command_needs_samples(tmp_path: Path):
    np.save(tmp_path / "train.npy", random_images(4, 8, seed=0))
    with pytest.raises(FileNotFoundError, match="lapcvae evaluate"):
        neighbours_main(["--res", "8", "--eval-dir", str(tmp_path / "eval"), "--train", str(tmp_path / "train.npy"),
                         "--test", str(tmp_path / "train.npy"), "--out-dir", str(tmp_path / "out"),
                         "--figure", str(tmp_path / "fig.png")])
