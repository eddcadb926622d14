"""`lapcvae train-baseline`: params in, a loadable checkpoint out, bad inputs refused with a clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from models.checkpoint import load_model
from workflow.commands.train import train_baseline_main as main

TINY = {
    "device": "cpu",
    "budget": {"epochs": 1},
    "train": {"batch_size": 4, "log_every": 1},
    # params.yaml gives both baselines their own batch size; these override it.
    "vae": {"64": {"train": {"batch_size": 4}}},
    "vaegan": {"64": {"widths": [4, 8, 8, 8], "latent_dim": 8, "dis_hidden": 8, "train": {"batch_size": 4}}},
}



def write_inputs(folder: Path, resolution: int = 64) -> tuple[Path, Path]:
    override = folder / "tiny.yaml"
    override.write_text(yaml.safe_dump(TINY))
    data = folder / "train.npy"
    rng = np.random.default_rng(0)
    np.save(data, rng.integers(0, 256, size=(8, 3, resolution, resolution), dtype=np.uint8))
    return override, data


@pytest.mark.parametrize("model", ["vaegan", "vae"])
def test_trains_and_writes_a_loadable_checkpoint(model: str, tmp_path: Path) -> None:
    override, data = write_inputs(tmp_path)
    out = tmp_path / model / "model.pt"
    main(["--params", str(override), "--model", model, "--res", "64", "--data", str(data), "--out", str(out)])
    trained = load_model(out)
    assert trained.kind == model
    assert trained.meta["steps"] == 2  # 8 images, batches of 4, one epoch
    images = torch.from_numpy(np.load(data)[:2]).float() / 255
    assert trained.reconstruct(images).shape == (2, 3, 64, 64)
    if model == "vaegan":
        assert trained.config["widths"] == [4, 8, 8, 8]


def test_refuses_images_of_another_resolution(tmp_path: Path) -> None:
    override, data = write_inputs(tmp_path, resolution=32)
    out = tmp_path / "model.pt"
    with pytest.raises(ValueError, match="lapcvae prepare"):
        main(["--params", str(override), "--model", "vaegan", "--res", "64", "--data", str(data), "--out", str(out)])
    assert not out.exists()


def test_refuses_a_missing_data_file(tmp_path: Path) -> None:
    override, _ = write_inputs(tmp_path)
    with pytest.raises(FileNotFoundError, match="lapcvae prepare"):
        main(["--params", str(override), "--model", "vae", "--res", "64", "--data", str(tmp_path / "none.npy"),
              "--out", str(tmp_path / "model.pt")])
