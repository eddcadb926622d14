"""Bad params files are refused by core.params.load_params with a message that names the key."""

from __future__ import annotations

import pytest
import yaml

from core import registry
from core.params import ParamsError, load_params, validate
from core.registry import models_at


def write_override(tmp_path, content: dict) -> str:
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump(content))
    return str(path)


@pytest.mark.parametrize(
    "override,message",
    [
        ({"data": {"sources": "celeba"}}, r"data\.sources: unknown key"),
        ({"data": {"synthetic": {"count": 10, "colour": "red"}}}, r"data\.synthetic\.colour: unknown key"),
        ({"data": {"resolutions": "64"}}, r"data\.resolutions: '64' is not of type 'array'"),
        ({"data": {"resolutions": [64, 64]}}, r"data\.resolutions: .*non-unique"),
        ({"data": {"test_fraction": 1.5}}, r"data\.test_fraction: 1\.5 is greater than or equal to"),
        ({"data": {"source": "imagenet"}}, r"data\.source: 'imagenet' is not one of"),
        ({"data": {"synthetic": {"count": "many"}}}, r"data\.synthetic\.count: 'many' is not of type 'integer'"),
        ({"data": {"synthetic": {"jpeg_quality": 20}}}, r"data\.synthetic\.jpeg_quality: 20 is less than"),
        ({"data": {"crop": {"top": -1}}}, r"data\.crop\.top: -1 is less than the minimum"),
        ({"data": {"celeba": {"md5": "not-a-hash"}}}, r"data\.celeba\.md5: 'not-a-hash' does not match"),
        ({"data": {"celeba": {"download": "yes"}}}, r"data\.celeba\.download: 'yes' is not of type 'boolean'"),
        ({"lapcvae": {"64": {"kl_weights": [1.0, 1.0]}}}, r"lapcvae\.64\.kl_weights: has 2 entries but"),
        ({"data": {"resolutions": [96]}}, r"lapcvae\.96: data\.resolutions lists 96"),
        # a model's own schedule is checked against the shared loop's schema (a $ref into train.schema.yaml)
        ({"vae": {"64": {"train": {"schedule": {"decay": "step"}}}}},
         r"vae\.64\.train\.schedule\.decay: 'step' is not one of"),
        ({"lapcvae": {"128": {"train": {"schedule": {"warmup": 2}}}}},
         r"lapcvae\.128\.train\.schedule\.warmup: 2 is greater than the maximum"),
    ],
)
def test_bad_params_name_the_key(tmp_path, override, message):
    with pytest.raises(ParamsError, match=message):
        load_params(write_override(tmp_path, override))


def test_good_override_merges(tmp_path):
    params = load_params(write_override(tmp_path, {"data": {"source": "celeba", "celeba": {"archive": "a.zip"}}}))
    assert params["data"]["source"] == "celeba" and params["data"]["celeba"]["archive"] == "a.zip"
    assert params["data"]["celeba"]["md5"] == "00d2c5bc6d35e252742224ab0c1e8fcb"


def test_a_model_runs_at_the_resolutions_its_section_has() -> None:
    """core/registry.py models_at: PixelVAE at 64 px only by default (the paper's); a profile's entry adds 128."""
    params = load_params()
    assert "pixelvae" in models_at(params, 64) and "pixelvae" not in models_at(params, 128)
    assert models_at(params, 128) == [name for name in registry.names() if name != "pixelvae"]
    with_128 = {**params, "pixelvae": {**params["pixelvae"], "128": params["pixelvae"]["64"]}}
    assert models_at(validate(with_128), 128) == registry.names()
    # an entry for a resolution the run does not compute is ignored (`-S data.resolutions='[64]'` runs whole)
    only_64 = {**with_128, "data": {**params["data"], "resolutions": [64]}}
    assert registry.resolutions_of(validate(only_64), "pixelvae") == [64]


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda p: {**p, "pixelvae": {}}, r"pixelvae: \{\} should be non-empty"),
        (lambda p: {**p, "pixelvae": {"32": p["pixelvae"]["64"]}},
         r"pixelvae: has settings for \['32'\] but data.resolutions is \[64, 128\], so pixelvae would run nowhere"),
        (lambda p: {**p, "vae": {"64": p["vae"]["64"]}},  # the study compares the VAE at 128 px
         r"human_study.models: \['vae'\] do not run at the study's 128 px"),
    ],
)
def test_a_model_that_runs_nowhere_is_refused(change, message) -> None:
    with pytest.raises(ParamsError, match=message):
        validate(change(load_params()))
