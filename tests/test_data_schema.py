"""Bad params files are refused by core.params.load_params with a message that names the key."""

from __future__ import annotations

import pytest
import yaml

from core.params import ParamsError, load_params


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
    ],
)
def test_bad_params_name_the_key(tmp_path, override, message):
    with pytest.raises(ParamsError, match=message):
        load_params(write_override(tmp_path, override))


def test_good_override_merges(tmp_path):
    params = load_params(write_override(tmp_path, {"data": {"source": "celeba", "celeba": {"archive": "a.zip"}}}))
    assert params["data"]["source"] == "celeba" and params["data"]["celeba"]["archive"] == "a.zip"
    assert params["data"]["celeba"]["md5"] == "00d2c5bc6d35e252742224ab0c1e8fcb"
