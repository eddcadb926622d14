"""docs/extending.md's "Adding a data set", followed to the letter in a copy of the repository, with a toy data set.

Steps (docs/extending.md): the data set's module (tests/toy/toyfaces.py -> data/toyfaces.py), one entry in
core/datasets.py's DATASETS and its schema fragment in core/schemas/datasets/; params then name it in
data.source. Nothing else is edited: the DAG must write its raw tree and prepare must split it into arrays.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_repository

from core.params import ParamsError, deep_merge, load_params, validate

REPO = Path(__file__).resolve().parent.parent
TOY = Path(__file__).resolve().parent / "toy"
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
REGISTRY_MARK = "    # Add a data set here"
TOY_ENTRY = '    DatasetSpec("toyfaces", "data.toyfaces:write_raw", "flat-colour toy faces"),\n'
COUNT = 10


def run(*command: str, cwd: Path) -> str:
    """Run in the copy, with the copy's packages (not this checkout's) first on the import path."""
    env = {**ENV, "PYTHONPATH": str(cwd)}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def copy_with_toy_data_set(destination: Path) -> Path:
    """The repository (as git sees it) at smoke scale, 64 px only, with the toy data set added the documented way."""
    copy_repository(destination)
    # 1. the module with its writer
    (destination / "data/toyfaces.py").write_text((TOY / "toyfaces.py").read_text())
    # 2. one registry entry
    registry = destination / "core/datasets.py"
    text = registry.read_text()
    assert REGISTRY_MARK in text, "core/datasets.py lost the line new data sets are added above"
    registry.write_text(text.replace(REGISTRY_MARK, TOY_ENTRY + REGISTRY_MARK, 1))
    # 3. its schema fragment
    (destination / "core/schemas/datasets/toyfaces.schema.yaml").write_text((TOY / "toyfaces.schema.yaml").read_text())
    # 4. params that pick it (here merged over the smoke params, one resolution to stay cheap)
    params = deep_merge(load_params("config/smoke.yaml"),
                        {"data": {"source": "toyfaces", "resolutions": [64], "toyfaces": {"count": COUNT}},
                         "human_study": {"resolution": 64}})
    (destination / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git", "init", "-q", cwd=destination)
    return destination


def test_a_registered_data_set_is_written_and_prepared_by_the_dag(tmp_path: Path) -> None:
    root = copy_with_toy_data_set(tmp_path)
    run("snakemake", "--cores", "1", "data/prepared/manifest.json", cwd=root)
    assert not (root / "data/raw/synthetic").exists()  # the toy set, not the default one, was prepared
    prepared = root / "data/prepared"
    manifest = yaml.safe_load((prepared / "manifest.json").read_text())
    assert manifest["source"] == "toyfaces" and manifest["counts"]["total"] == COUNT
    attributes = pd.read_csv(prepared / "attributes.csv")
    assert list(attributes.columns) == ["split", "row", "image_id", "Bright"]
    assert sorted(attributes["image_id"]) == [f"{index + 1:06d}.jpg" for index in range(COUNT)]
    # Each prepared image is its toy image: flat colour outside the square, half that colour inside.
    seed = yaml.safe_load((root / "params.yaml").read_text())["seed"]
    colours = np.random.default_rng(seed).integers(0, 256, size=(COUNT, 3), dtype=np.uint8).astype(int)  # (N, 3)
    total = 0
    for split in ("train", "val", "test"):
        images = np.load(prepared / "64" / f"{split}.npy")  # (n, 3, 64, 64) uint8
        rows = attributes[attributes["split"] == split].sort_values("row")
        assert images.shape == (len(rows), 3, 64, 64) and images.dtype == np.uint8
        for image, image_id, bright in zip(images.astype(int), rows["image_id"], rows["Bright"], strict=True):
            colour = colours[int(image_id[:6]) - 1]
            assert np.abs(image[:, 2, 2] - colour).max() <= 4  # corner: the flat colour (JPEG error aside)
            assert np.abs(image[:, 32, 32] - colour // 2).max() <= 4  # centre: inside the square
            assert bright == int(colour.sum() > 381)
        total += len(rows)
    assert total == COUNT


def test_data_source_is_checked_against_the_registry() -> None:
    params = load_params("config/smoke.yaml")
    with pytest.raises(ParamsError, match=r"data.source: 'mnist' is not one of \['synthetic', 'celeba'"):
        validate(deep_merge(params, {"data": {"source": "mnist"}}))
    with pytest.raises(ParamsError, match="data.toyfaces: unknown key"):
        validate(deep_merge(params, {"data": {"toyfaces": {"count": 3}}}))  # not registered: no section either
