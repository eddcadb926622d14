"""A checkpoint is what the command asks for: its kind, variant, pyramid levels, resolution and the training job
that wrote it are checked (models/checkpoint.py, eval.metrics.expected_checkpoint, core.registry.training_label),
and non-finite weights are refused at load. The checkpoints here come from real (tiny) training jobs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_reliability import lapcvae_cli

from core import registry
from models import checkpoint
from workflow import cli

RES = 64
SMOKE = Path(__file__).resolve().parent.parent / "config" / "smoke.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """LapCVAE (three levels), its retrained M, the VAE and the VAE at LapCVAE's FLOPs, trained on 32 images."""
    root = tmp_path_factory.mktemp("trained")
    rng = np.random.default_rng(0)
    np.save(root / "train.npy", rng.integers(0, 256, (32, 3, RES, RES), dtype=np.uint8))
    np.save(root / "test.npy", rng.integers(0, 256, (4, 3, RES, RES), dtype=np.uint8))
    (root / "cpu.yaml").write_text(yaml.safe_dump({"device": "cpu", "eval": {"samples": 2, "bootstrap_samples": 10}}))
    common = ["--params", str(SMOKE), "--params", str(root / "cpu.yaml"), "--res", str(RES),
              "--data", str(root / "train.npy")]
    levels = root / "models" / str(RES) / "lapcvae"  # core/registry.py's layout
    for level in (2, 1, 0):
        coarser = ["--coarser", str(levels / f"level{level + 1}.pt")] if level < 2 else []
        cli.main(["train-level", *common, "--variant", "lapcvae", "--level", str(level), *coarser,
                  "--out", str(levels / f"level{level}.pt")])
    cli.main(["retrain-m", *common, "--checkpoint", str(levels / "level0.pt"),
              "--out", str(levels / "retrained_m.pt")])
    for baseline in ("vae", "vae_equal_flops"):
        out = registry.checkpoint(str(root), RES, baseline)
        cli.main(["train-baseline", *common, "--model", baseline, "--out", out])
    return root


def evaluate(root: Path, model: str, ckpt: Path, out: str = "out") -> list[str]:
    return ["evaluate", "--params", str(SMOKE), "--params", str(root / "cpu.yaml"), "--res", str(RES), "--model",
            model, "--checkpoint", str(ckpt), "--test", str(root / "test.npy"), "--out-dir", str(root / out),
            "--per-image", str(root / out / "per_image.csv")]


@pytest.mark.parametrize(("model", "file", "words"), [
    ("lapcvae", "lapcvae/level2.pt", "holds only the 1 coarsest of 3 pyramid levels, but the whole model"),
    ("lapcvae", "lapcvae/level1.pt", "holds only the 2 coarsest of 3 pyramid levels"),
    ("vae", "vae_equal_flops/model.pt", "written by training job vae_equal_flops@64, but vae@64's checkpoint"),
    ("vae_equal_flops", "vae/model.pt", "written by training job vae@64, but vae_equal_flops@64's"),
    ("lapcvae_retrained_m", "lapcvae/level0.pt", "job 64/lapcvae/level0, but 64/lapcvae/retrain_m's checkpoint"),
    ("lapcvae", "lapcvae/retrained_m.pt", "job 64/lapcvae/retrain_m, but 64/lapcvae/level0's checkpoint"),
])
def test_evaluate_refuses_another_models_checkpoint_before_writing(trained, model, file, words):
    ckpt = trained / "models" / str(RES) / file
    message = lapcvae_cli(*evaluate(trained, model, ckpt, out=f"out-{model}"))
    assert words in message and str(ckpt) in message
    assert not (trained / f"out-{model}").exists()


def test_each_models_own_checkpoint_is_evaluated(trained):
    for model in ("lapcvae", "lapcvae_retrained_m", "vae", "vae_equal_flops"):
        ckpt = Path(registry.checkpoint(str(trained), RES, model))
        assert checkpoint.load_checkpoint(ckpt)["meta"]["name"] == registry.training_label(model, RES)
        cli.main(evaluate(trained, model, ckpt, out=f"ok-{model}"))
        assert json.loads((trained / f"ok-{model}" / "summary.json").read_text())["rmse_mean"] > 0


def test_retrain_m_refuses_a_coarser_level(trained):
    level1 = registry.level_checkpoint(str(trained), RES, "lapcvae", 1)
    message = lapcvae_cli("retrain-m", "--params", str(SMOKE), "--params", str(trained / "cpu.yaml"), "--res",
                          str(RES), "--checkpoint", level1, "--data", str(trained / "train.npy"),
                          "--out", str(trained / "retrain-from-level1.pt"))
    assert "holds only the 2 coarsest of 3 pyramid levels" in message
    assert not (trained / "retrain-from-level1.pt").exists()


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_by_every_command(trained, tmp_path, value):
    content = checkpoint.load_checkpoint(registry.checkpoint(str(trained), RES, "lapcvae"))
    key = next(name for name, tensor in content["state_dict"].items() if tensor.is_floating_point())
    content["state_dict"][key] = torch.full_like(content["state_dict"][key], value)
    broken = tmp_path / "level0.pt"
    checkpoint.atomic_save(content, broken)
    for argv in (evaluate(trained, "lapcvae", broken, out=str(tmp_path / "eval")),
                 ["sample", "--checkpoint", str(broken), "--n", "2", "--out", str(tmp_path / "s.npy")]):
        message = lapcvae_cli(*argv)
        assert f"non-finite values (NaN or inf) in {key}" in message and "retrain" in message
    assert not (tmp_path / "eval").exists() and not (tmp_path / "s.npy").exists()
