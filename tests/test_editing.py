"""Editing operations (eval/editing.py) on a tiny untrained LapCVAE (random band outputs): what is kept, what is
sampled, what is blended."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import with_random_band_outputs
from PIL import Image

from eval.editing import (
    box_mask,
    box_slices,
    coarse_edit,
    coarse_image,
    paint_box,
    region_resample,
    skin_tone,
    with_coarse_image,
)
from eval.editing_figures import load_edited_coarse, load_mask, pick_sunglasses_face
from models.checkpoint import save_model
from models.lapcvae import LapCVAE
from workflow.commands.editing import edit_coarse_main, edit_region_main

SIZE, LEVELS, FIXED, VARIANTS = 16, 3, 2, 3
BOX = {"top": 0.25, "left": 0.25, "bottom": 0.75, "right": 0.75}


@pytest.fixture(scope="module")
def model() -> LapCVAE:
    torch.manual_seed(0)
    config = {"resolution": SIZE, "levels": LEVELS, "latent_dims": [4, 4, 4], "kl_weights": [1.0, 1.0, 1.0],
              "widths": [4, 8], "feature_size": 4, "m_hidden": 8, "use_m": True}
    return with_random_band_outputs(LapCVAE.from_config(config)).eval()  # untrained bands would add no detail


def face(seed: int = 0) -> torch.Tensor:
    """(1, 3, SIZE, SIZE) in [0.2, 0.8]."""
    return 0.2 + 0.6 * torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def kept_levels(model: LapCVAE, image: torch.Tensor, n: int, seed: int) -> list[torch.Tensor]:
    """The composed images of the fixed coarse levels the model produces for `image`."""
    composed = model.partial_levels(image, FIXED, n, seed)  # finest first
    return composed[LEVELS - FIXED:]


def test_box_slices_cover_the_fraction_and_are_never_empty():
    rows, cols = box_slices(16, 20, {"top": 0.25, "left": 0.1, "bottom": 0.5, "right": 0.12})
    assert (rows.start, rows.stop, cols.start, cols.stop) == (4, 8, 2, 3)
    assert box_mask(16, 20, BOX).sum() == 8 * 10
    with pytest.raises(ValueError, match="top < bottom"):
        box_slices(16, 16, {"top": 0.5, "left": 0.1, "bottom": 0.4, "right": 0.2})


def test_splicing_an_images_own_coarse_level_gives_the_image_back():
    image = face(1)
    coarse = coarse_image(image, LEVELS, FIXED)
    assert coarse.shape == (1, 3, SIZE // 2, SIZE // 2)
    torch.testing.assert_close(with_coarse_image(image, coarse, LEVELS, FIXED), image, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="paint the coarse level at that size"):
        with_coarse_image(image, coarse[..., :4, :4], LEVELS, FIXED)
    with pytest.raises(ValueError, match="fixed_levels"):
        coarse_image(image, LEVELS, LEVELS + 1)


def test_skin_tone_is_the_median_of_the_skin_boxes_and_paint_fills_the_box():
    coarse = torch.zeros(1, 3, 8, 8)
    skin = torch.tensor([0.8, 0.6, 0.5])
    coarse[0, :, 5:7, 1:3] = skin.view(3, 1, 1)  # cheek
    coarse[0, :, 1:3, 3:5] = skin.view(3, 1, 1)  # forehead
    coarse[0, :, 1, 3] = 1.0  # a stray bright pixel the median ignores
    boxes = [{"top": 5 / 8, "left": 1 / 8, "bottom": 7 / 8, "right": 3 / 8},
             {"top": 1 / 8, "left": 3 / 8, "bottom": 3 / 8, "right": 5 / 8}]
    tone = skin_tone(coarse, boxes)
    torch.testing.assert_close(tone, skin)
    painted = paint_box(coarse, BOX, tone)
    torch.testing.assert_close(painted[0, :, 2:6, 2:6], skin.view(3, 1, 1).expand(3, 4, 4))
    outside = torch.from_numpy(~box_mask(8, 8, BOX))
    torch.testing.assert_close(painted[0][:, outside], coarse[0][:, outside])


def test_coarse_edit_keeps_the_edited_coarse_levels_and_samples_distinct_variants(model):
    image = face(2)
    coarse = coarse_image(image, LEVELS, FIXED)
    edited_coarse = paint_box(coarse, BOX, torch.tensor([0.9, 0.7, 0.6]))
    mask = box_mask(SIZE, SIZE, BOX)
    result = coarse_edit(model, image, edited_coarse, mask, FIXED, VARIANTS, seed=7)

    assert result.variants.shape == result.composites.shape == (VARIANTS, 3, SIZE, SIZE)
    for i in range(VARIANTS):
        for j in range(i + 1, VARIANTS):
            assert (result.variants[i] - result.variants[j]).abs().max() > 1e-3
    # The model was conditioned on the edited coarse image: the variants are its finer completions.
    composed = model.partial_levels(result.edited, FIXED, VARIANTS, 7)
    torch.testing.assert_close(result.variants, model.to_full_size(composed[0]).clamp(0, 1))
    # Coarse levels are identical across variants and do not depend on the sampling seed ...
    for level, other_seed_level in zip(composed[LEVELS - FIXED:], kept_levels(model, result.edited, 1, 99),
                                       strict=True):
        assert torch.equal(level, level[:1].expand_as(level))
        torch.testing.assert_close(level[:1], other_seed_level)
    # ... and they are the edit's, not the original's.
    assert (kept_levels(model, image, 1, 7)[0] - composed[LEVELS - FIXED][:1]).abs().max() > 1e-4
    # Composites: the reconstruction outside the mask, the variants' region blended in.
    outside = torch.from_numpy(~mask)
    torch.testing.assert_close(result.composites[:, :, outside],
                               result.reconstruction[:, :, outside].expand(VARIANTS, -1, -1))
    assert (result.composites[0] - result.composites[1]).abs().max() > 1e-3


def test_region_resample_keeps_the_images_own_coarse_levels(model):
    image = face(3)
    mask = box_mask(SIZE, SIZE, BOX)
    result = region_resample(model, image, mask, FIXED, VARIANTS, seed=5)
    assert torch.equal(result.edited, image)
    assert (result.variants[0] - result.variants[1]).abs().max() > 1e-3
    composed = model.partial_levels(image, FIXED, VARIANTS, 5)
    torch.testing.assert_close(result.variants, model.to_full_size(composed[0]).clamp(0, 1))
    torch.testing.assert_close(result.reconstruction, model.reconstruct(image))


def test_edit_rejects_a_mask_of_the_wrong_size(model):
    with pytest.raises(ValueError, match="mask"):
        region_resample(model, face(), np.ones((SIZE, SIZE + 1), dtype=bool), FIXED, VARIANTS, seed=0)


def test_edited_file_is_a_coarse_level_or_a_painted_full_image(tmp_path):
    coarse_file, full_file = tmp_path / "coarse.png", tmp_path / "full.png"
    Image.fromarray(np.full((8, 8, 3), 200, dtype=np.uint8)).save(coarse_file)
    Image.fromarray(np.full((40, 30, 3), 100, dtype=np.uint8)).save(full_file)
    coarse = load_edited_coarse(coarse_file, SIZE, LEVELS, FIXED)
    full = load_edited_coarse(full_file, SIZE, LEVELS, FIXED)
    assert coarse.shape == full.shape == (1, 3, 8, 8)
    torch.testing.assert_close(coarse, torch.full_like(coarse, 200 / 255))
    torch.testing.assert_close(full, torch.full_like(full, 100 / 255), atol=1e-5, rtol=0)
    with pytest.raises(FileNotFoundError):
        load_edited_coarse(tmp_path / "missing.png", SIZE, LEVELS, FIXED)


def test_mask_files_are_checked(tmp_path):
    corrupt, black = tmp_path / "corrupt.png", tmp_path / "black.png"
    corrupt.write_bytes(b"not a png")
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(black)
    with pytest.raises(ValueError, match="cannot be read"):
        load_mask(corrupt, SIZE)
    with pytest.raises(ValueError, match="no white pixel"):
        load_mask(black, SIZE)


def write_attributes(path, sunglasses: list[int], eyeglasses: list[int]) -> None:
    n = len(sunglasses)
    pd.DataFrame({"split": ["train"] + ["test"] * n, "row": [0, *range(n)],
                  "image_id": [f"{i:06d}.jpg" for i in range(n + 1)],
                  "Eyeglasses": [1, *eyeglasses], "Sunglasses": [1, *sunglasses]}).to_csv(path, index=False)


def test_pick_sunglasses_face_prefers_sunglasses_then_eyeglasses_then_the_first(tmp_path):
    path = tmp_path / "attributes.csv"
    write_attributes(path, sunglasses=[0, 0, 1, 0], eyeglasses=[-1, 1, -1, 1])
    assert pick_sunglasses_face(path) == 2
    write_attributes(path, sunglasses=[0, 0, 0, 0], eyeglasses=[-1, -1, -1, 1])
    assert pick_sunglasses_face(path) == 3
    write_attributes(path, sunglasses=[0, 0, 0, 0], eyeglasses=[-1, -1, -1, -1])
    assert pick_sunglasses_face(path) == 0


@pytest.fixture()
def pipeline_inputs(tmp_path, model):
    prepared = tmp_path / "prepared"
    (prepared / str(SIZE)).mkdir(parents=True)
    test_images = np.random.default_rng(0).integers(40, 220, size=(4, 3, SIZE, SIZE), dtype=np.uint8)
    np.save(prepared / str(SIZE) / "test.npy", test_images)
    write_attributes(prepared / "attributes.csv", sunglasses=[0, 1, 0, 0], eyeglasses=[-1, 1, 1, -1])
    checkpoint = tmp_path / "level0.pt"
    save_model(checkpoint, model)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"device": "cpu", "editing": {"variants": 2, "fixed_levels": FIXED}}))
    common = ["--params", str(params), "--checkpoint", str(checkpoint), "--prepared", str(prepared)]
    return test_images, common


def read_png(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_edit_coarse_pipeline_mode_edits_the_sunglasses_face(tmp_path, pipeline_inputs):
    test_images, common = pipeline_inputs
    out_dir, figure = tmp_path / "coarse", tmp_path / "fig1.png"
    edit_coarse_main([*common, "--res", str(SIZE), "--out-dir", str(out_dir), "--figure", str(figure)])
    np.testing.assert_array_equal(read_png(out_dir / "input.png"), test_images[1].transpose(1, 2, 0))
    assert sorted(p.name for p in out_dir.glob("composite_*.png")) == ["composite_00.png", "composite_01.png"]
    assert read_png(figure).shape[2] in (3, 4)
    # Outside the default eye box each composite is the reconstruction of the face.
    mask = read_png(out_dir / "mask.png") > 0
    reconstruction = read_png(out_dir / "reconstruction.png")
    for name in ("composite_00.png", "composite_01.png"):
        np.testing.assert_array_equal(read_png(out_dir / name)[~mask], reconstruction[~mask])
    assert not np.array_equal(read_png(out_dir / "variant_00.png"), read_png(out_dir / "variant_01.png"))


def test_edit_region_user_mode_resizes_the_users_files(tmp_path, pipeline_inputs):
    _, common = pipeline_inputs
    image_file, mask_file = tmp_path / "face.png", tmp_path / "mask.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (45, 30, 3), dtype=np.uint8)).save(image_file)
    mask = np.zeros((45, 30), dtype=np.uint8)
    mask[20:40, 5:25] = 255
    Image.fromarray(mask).save(mask_file)
    out_dir = tmp_path / "region"
    edit_region_main([*common, "--image", str(image_file), "--mask", str(mask_file), "--out-dir", str(out_dir),
                      "--figure", str(tmp_path / "fig9.png")])
    assert read_png(out_dir / "input.png").shape == (SIZE, SIZE, 3)
    assert (read_png(out_dir / "mask.png") > 0).sum() == (load_mask(mask_file, SIZE)).sum()
    assert len(list(out_dir.glob("variant_*.png"))) == 2


def test_edit_rejects_a_resolution_other_than_the_models(tmp_path, pipeline_inputs):
    _, common = pipeline_inputs
    with pytest.raises(ValueError, match="--res 64"):
        edit_region_main([*common, "--res", "64", "--out-dir", str(tmp_path / "out"),
                          "--figure", str(tmp_path / "figure.png")])
