"""Images are read as they are: `.JPG` members count, 16-bit and other modes convert to the right 8-bit values or
are refused by name, an archive naming a member twice is refused, and a zip bomb is refused before extraction."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from PIL import Image
from test_reliability import reconstruct_with_a_tiny_vae, run_prepare, write_faces

from data.celeba import extract
from workflow.commands.sample import read_image_file


def test_uppercase_jpg_members_are_prepared(tmp_path):
    raw = write_faces(tmp_path / "raw", [(178, 218)] * 10)
    images = raw / "img_align_celeba"
    for index, path in enumerate(sorted(images.iterdir())):
        if index % 2:
            path.rename(path.with_suffix(".JPG" if index % 4 == 1 else ".jpeg"))
    manifest = run_prepare(raw, tmp_path / "prepared")
    assert manifest["counts"]["total"] == 10


def test_a_16_bit_png_is_scaled_to_8_bits_not_clipped_white(tmp_path):
    rng = np.random.default_rng(0)
    grey16 = rng.integers(0, 65536, (16, 16))
    path = tmp_path / "face16.png"
    Image.fromarray(grey16.astype(np.uint16)).save(path)  # mode I;16: a 16-bit grey PNG
    assert Image.open(path).mode.startswith("I;16")
    pixels = read_image_file(path, 16)[0]  # (3, 16, 16) in [0, 1]
    expected = np.floor(grey16 / 257.0 + 0.5) / 255.0
    assert np.allclose(pixels.numpy(), np.broadcast_to(expected, (3, 16, 16)), atol=1e-6)
    assert 0.3 < float(pixels.mean()) < 0.7  # not all white


def test_prepare_scales_a_16_bit_png_named_as_a_jpeg_tree_member(tmp_path):
    """A 16-bit grey image in the raw tree: its crop is the 8-bit scaled grey, in all three channels."""
    raw = write_faces(tmp_path / "raw", [(178, 218)] * 9)
    grey16 = np.full((218, 178), 257 * 100)
    path = raw / "img_align_celeba" / "000010.jpg"
    Image.fromarray(grey16.astype(np.uint16)).save(path, format="PNG")
    run_prepare(raw, tmp_path / "prepared")
    rows = {line.split(",")[2]: line.split(",") for line in
            (tmp_path / "prepared" / "attributes.csv").read_text().splitlines()[1:]}
    split, row = rows["000010.jpg"][0], int(rows["000010.jpg"][1])
    image = np.load(tmp_path / "prepared" / "16" / f"{split}.npy")[row]
    assert abs(float(image.mean()) - 100) <= 1  # bicubic of a flat 100 stays 100, not 255


def test_a_float_image_is_refused_by_name(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.zeros((16, 16), dtype=np.float32)).save(path)
    message = reconstruct_with_a_tiny_vae(tmp_path, path)
    assert str(path) in message and "floating-point" in message


def test_a_member_named_twice_is_refused(tmp_path):
    archive = tmp_path / "img_align_celeba.zip"
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("img_align_celeba/000001.jpg", b"first")
        handle.writestr("img_align_celeba/000001.jpg", b"second")
    with pytest.raises(ValueError, match=r"000001\.jpg' appears twice"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_zip_bomb_is_refused_before_extraction(tmp_path):
    archive = tmp_path / "img_align_celeba.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("img_align_celeba/000001.jpg", b"\0" * (64 * 2**20))  # 64 MiB of zeros: ~64 KiB zipped
    with pytest.raises(ValueError, match=r"expand to 64\.0 MiB, \d+x the archive's .*zip bomb"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_rows_read_from_a_memory_mapped_split_equal_numpy_indexing(tmp_path):
    """The training loop reads its batches with read_rows (pread, not through the mapping): the same rows, in the
    order asked, repeats included, as numpy's fancy indexing of the array."""
    from data.arrays import load_image_array, read_rows

    images = np.random.default_rng(3).integers(0, 256, (40, 3, 8, 8), dtype=np.uint8)
    np.save(tmp_path / "train.npy", images)
    mapped = load_image_array(tmp_path / "train.npy", 8)
    order = np.array([39, 0, 17, 17, 5])
    assert np.array_equal(read_rows(mapped, order), images[order])
    assert np.array_equal(read_rows(images, order), images[order])  # an in-memory array, indexed directly
