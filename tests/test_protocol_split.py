"""The validation split: carved from the training images, disjoint, reproducible, test split unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from data.prepare import Crop, prepare, split_indices
from data.synthetic import generate


def test_validation_split_sizes_disjoint_and_complete():
    splits = split_indices(100, 0.2, seed=3, validation_fraction=0.1)
    assert {name: len(indices) for name, indices in splits.items()} == {"train": 72, "val": 8, "test": 20}
    union = np.concatenate(list(splits.values()))
    assert sorted(union.tolist()) == list(range(100))  # disjoint and complete


def test_validation_split_is_seeded_and_leaves_the_test_split_alone():
    first, again, other = (split_indices(100, 0.2, seed, 0.1) for seed in (3, 3, 4))
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert not np.array_equal(first["val"], other["val"])
    without = split_indices(100, 0.2, seed=3)
    assert np.array_equal(without["test"], first["test"])  # tuning never moves a test image
    assert set(first["val"]) | set(first["train"]) == set(without["train"])


def test_validation_split_too_small_is_a_clear_error():
    with pytest.raises(ValueError, match="validation_fraction"):
        split_indices(10, 0.2, seed=0, validation_fraction=0.01)


def test_prepare_writes_val_npy_and_records_it(tmp_path):
    raw = generate(tmp_path / "raw", count=12, seed=1, jpeg_quality=90)
    manifest = prepare(raw, tmp_path / "out", crop=Crop(40, 15, 148), resolutions=[16], test_fraction=0.2,
                       seed=0, source="synthetic", validation_fraction=0.2)
    assert manifest["counts"] == {"total": 12, "train": 8, "val": 2, "test": 2}
    assert manifest["validation_fraction"] == 0.2 and "16/val.npy" in manifest["arrays"]
    assert np.load(tmp_path / "out" / "16" / "val.npy").shape == (2, 3, 16, 16)
