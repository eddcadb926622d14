"""`prepare`: crop and resize against an independent PIL pipeline, split rules, outputs, failure cleanup."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from data.celeba_format import ATTRIBUTES_FILE, IMAGE_DIR, read_attributes
from data.prepare import Crop, n_test_images, prepare, split_indices
from data.synthetic import generate

CROP = Crop(top=40, left=15, size=148)
RESOLUTIONS = (16, 32)
COUNT = 12


@pytest.fixture(scope="module")
def raw_tree(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("raw") / "synthetic", count=COUNT, seed=1, jpeg_quality=90)


def run_prepare(raw, out, seed=0, workers=1):
    return prepare(raw, out, crop=CROP, resolutions=RESOLUTIONS, test_fraction=0.2, seed=seed,
                   source="synthetic", workers=workers, min_images_per_worker=1)


@pytest.fixture(scope="module")
def prepared(raw_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "prepared"
    return out, run_prepare(raw_tree, out)


def read_rows(out):
    with open(out / "attributes.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_rounding_on_full_celeba():
    assert n_test_images(202_599, 0.2) == 40_520  # 40,519.8 rounds up
    assert 202_599 - n_test_images(202_599, 0.2) == 162_079
    assert n_test_images(10, 0.25) == 3  # 2.5: half rounds up
    split = split_indices(202_599, 0.2, seed=0)
    assert (len(split["train"]), len(split["test"])) == (162_079, 40_520)


def test_split_is_disjoint_complete_and_reproducible():
    first, again, other = (split_indices(50, 0.2, seed) for seed in (0, 0, 1))
    assert len(first["test"]) == 10 and len(first["train"]) == 40
    assert not set(first["train"]) & set(first["test"])
    assert sorted([*first["train"], *first["test"]]) == list(range(50))
    assert all(np.array_equal(first[key], again[key]) for key in first)
    assert not np.array_equal(first["test"], other["test"])
    with pytest.raises(ValueError, match="both need at least one"):
        split_indices(2, 0.2, seed=0)


def test_arrays_match_an_independent_crop_and_resize(raw_tree, prepared):
    out, manifest = prepared
    rows = read_rows(out)
    assert manifest["counts"] == {"total": COUNT, "train": 10, "test": 2}
    for size in RESOLUTIONS:
        arrays = {split: np.load(out / str(size) / f"{split}.npy", mmap_mode="r") for split in ("train", "test")}
        assert arrays["train"].shape == (10, 3, size, size) and arrays["train"].dtype == np.uint8
        assert arrays["test"].shape == (2, 3, size, size)
        for row in rows:
            with Image.open(raw_tree / IMAGE_DIR / row["image_id"]) as image:
                cropped = np.asarray(image.convert("RGB"))[40:188, 15:163]  # numpy slicing, not PIL's box
            expected = np.asarray(Image.fromarray(cropped).resize((size, size), Image.BICUBIC)).astype(int)
            got = arrays[row["split"]][int(row["row"])].transpose(1, 2, 0).astype(int)
            # PIL's bicubic and torch's uint8 antialiased bicubic differ only in rounding.
            assert np.abs(got - expected).max() <= 2 and np.abs(got - expected).mean() < 0.05, row["image_id"]


def test_attributes_csv_and_manifest(raw_tree, prepared):
    out, manifest = prepared
    rows = read_rows(out)
    source = read_attributes(raw_tree / ATTRIBUTES_FILE)
    assert [row["image_id"] for row in rows if row["split"] == "train"] == sorted(
        row["image_id"] for row in rows if row["split"] == "train")
    assert sorted(row["image_id"] for row in rows) == sorted(source)
    assert list(rows[0])[:3] == ["split", "row", "image_id"] and list(rows[0])[-1] == "Sunglasses"
    for row in rows:
        for name, value in source[row["image_id"]].items():
            assert int(row[name]) == (1 if value == 1 else 0)
        if int(row["Sunglasses"]):
            assert int(row["Eyeglasses"]) == 1
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    for relative, entry in manifest["arrays"].items():
        assert hashlib.sha256((out / relative).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["crop"] == {"top": 40, "left": 15, "size": 148} and manifest["seed"] == 0


def test_reproducible_parallel_and_seeded(raw_tree, prepared, tmp_path):
    _, manifest = prepared
    again = run_prepare(raw_tree, tmp_path / "again", workers=2)
    assert again["arrays"] == manifest["arrays"]
    reseeded = run_prepare(raw_tree, tmp_path / "reseeded", seed=5)
    assert reseeded["arrays"]["16/test.npy"]["sha256"] != manifest["arrays"]["16/test.npy"]["sha256"]


def test_missing_attributes_file_leaves_only_the_index_columns(raw_tree, tmp_path):
    raw = tmp_path / "raw"
    shutil.copytree(raw_tree / IMAGE_DIR, raw / IMAGE_DIR)
    manifest = run_prepare(raw, tmp_path / "out")
    assert manifest["attributes"] == []
    assert list(read_rows(tmp_path / "out")[0]) == ["split", "row", "image_id"]


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_image_stops_with_its_name_and_leaves_nothing(raw_tree, tmp_path, workers):
    raw = tmp_path / "raw"
    shutil.copytree(raw_tree, raw)
    victim = raw / IMAGE_DIR / "000005.jpg"
    victim.write_bytes(victim.read_bytes()[:300])  # a truncated JPEG
    out = tmp_path / "prepared"
    with pytest.raises(ValueError, match=r"000005\.jpg: cannot read this image"):
        run_prepare(raw, out, workers=workers)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["raw"]  # no output, no temporary folder


def test_previous_output_survives_a_failed_run(raw_tree, prepared, tmp_path):
    out = tmp_path / "prepared"
    manifest = run_prepare(raw_tree, out)
    raw = tmp_path / "raw"
    shutil.copytree(raw_tree, raw)
    (raw / IMAGE_DIR / "000002.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="000002.jpg"):
        run_prepare(raw, out)
    assert json.loads((out / "manifest.json").read_text()) == manifest
    with pytest.raises(FileNotFoundError, match="generate-faces"):
        run_prepare(tmp_path / "empty", tmp_path / "nothing")
