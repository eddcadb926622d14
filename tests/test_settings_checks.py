"""Settings the DAG reads late are checked when params load (core/params.py), with one line naming the key and a
fix that works; duplicate YAML keys are an error, in params files and in Snakemake's config files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from test_reliability import ENV, lapcvae_cli

from core import params as params_module
from core.params import ParamsError, deep_merge, load_params, read_yaml, validate
from models.lapcvae import LapCVAE

REPO = Path(__file__).resolve().parent.parent


def refused(override: dict, base: dict | None = None) -> str:
    with pytest.raises(ParamsError) as error:
        validate(deep_merge(base or load_params(), override))
    message = str(error.value)
    assert "\n" not in message
    return message


def only_at(res: int, section: dict) -> dict:
    """An override running only at `res` px, with the VAE/GAN and PixelVAE sections dropped to that resolution."""
    defaults = load_params()
    return {"data": {"resolutions": [res]}, "lapcvae": {str(res): section},
            **{model: {str(res): defaults[model]["64"]} for model in ("vae", "vaegan", "pixelvae")}}


def test_duplicate_keys_are_an_error_naming_both_lines(tmp_path):
    override = tmp_path / "dup.yaml"
    override.write_text("train:\n  lr: 0.1\n  batch_size: 8\n  lr: 0.2\n")
    with pytest.raises(ParamsError, match=r"dup\.yaml: key 'lr' is given twice in one mapping \(lines 2 and 4\)"):
        read_yaml(override)
    assert "given twice" in lapcvae_cli("sample", "--params", str(override), "--checkpoint", "x.pt", "--out",
                                        str(tmp_path / "s.npy"))


def test_snakemake_refuses_a_config_file_with_duplicate_keys(tmp_path):
    override = tmp_path / "dup.yaml"
    override.write_text("seed: 1\nseed: 2\n")
    result = subprocess.run(["snakemake", "-n", "--configfile", str(override)], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "key 'seed' is given twice" in result.stdout + result.stderr


@pytest.mark.parametrize(("override", "words"), [
    ({"editing": {"fixed_levels": 7}}, "editing.fixed_levels: 7 coarsest levels kept, but lapcvae.64.levels is 4"),
    ({"editing": {"region": {"image_index": 100000}}},
     "editing.region.image_index: 100000, but the test split holds 600 images"),
    ({"data": {"validation_fraction": 0.99}}, "data.validation_fraction: 0.99 is greater than the maximum of 0.5"),
])
def test_late_settings_are_refused_at_load(override, words):
    assert words in refused(override)


def test_neighbours_and_validation_are_checked_against_the_known_split_sizes():
    smoke = load_params("config/smoke.yaml")  # 60 faces: 43 training, 5 validation, 12 test images
    assert "eval.neighbours.k: 100 nearest training images, but there are 43" in refused(
        {"eval": {"neighbours": {"k": 100}}}, smoke)
    # 3 faces: 1 training image, 1 validation image, 1 test image
    assert "training needs at least two images" in refused({"data": {"validation_fraction": 0.5}},
                                                            deep_merge(smoke, {"data": {"synthetic": {"count": 3}}}))
    assert "pick one of 0..11" in refused({"editing": {"region": {"image_index": 12}}}, smoke)


def test_too_many_levels_for_the_resolution_is_one_line_not_a_traceback():
    section = {**load_params()["lapcvae"]["64"]}
    assert "lapcvae.8.levels: 4 levels of 8 px leave a 1 px coarsest level" in refused(only_at(8, section))
    assert "use at most 3 levels" in refused(only_at(8, section))


def test_the_feature_size_advice_can_be_followed():
    """96 px: the 12 px level cannot halve down to 8 px; the advised feature size validates, builds and runs."""
    section = {**load_params()["lapcvae"]["64"]}
    message = refused(only_at(96, section))
    advised = int(re.search(r"set lapcvae\.96\.feature_size to (\d+)", message).group(1))
    params = validate(deep_merge(load_params(), only_at(96, {**section, "feature_size": advised})))
    model = LapCVAE.from_params(params["lapcvae"]["96"], 96, use_m=True)
    with torch.no_grad():
        assert model.reconstruct(torch.rand(2, 3, 96, 96)).shape == (2, 3, 96, 96)
        assert model.sample(2, seed=0).shape == (2, 3, 96, 96)


def test_device_cuda_without_cuda_is_refused_when_the_dag_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ParamsError, match="device: cuda was asked for, but this machine has no CUDA device"):
        params_module.check_device("cuda")
    params_module.check_device("auto")
    if torch.cuda.is_available():
        return  # the DAG below would run on this machine's GPU
    override = tmp_path / "cuda.yaml"
    override.write_text(yaml.safe_dump({"device": "cuda"}))
    result = subprocess.run(["snakemake", "-n", "--configfile", str(override)], cwd=REPO, env=ENV,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "no CUDA device" in result.stdout + result.stderr
