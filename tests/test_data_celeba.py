"""`fetch-celeba` on tiny CelebA-format zips built here: checksum, unsafe members, offline help, then prepare."""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pytest
import yaml
from PIL import Image

from data.celeba import fetch_celeba, file_md5
from data.celeba_format import ATTRIBUTE_NAMES, IMAGE_DIR
from data.prepare import Crop, prepare
from workflow.commands.data import fetch_celeba_main as main

NAMES = [f"{index:06d}.jpg" for index in range(1, 7)]


def jpeg_bytes(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (218, 178, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def build_zip(path, extra_members: dict[str, bytes] | None = None, corrupt: str | None = None):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{IMAGE_DIR}/", b"")
        for seed, name in enumerate(NAMES):
            data = b"\xff\xd8 definitely not a JPEG" if name == corrupt else jpeg_bytes(seed)
            archive.writestr(f"{IMAGE_DIR}/{name}", data)
        for member, data in (extra_members or {}).items():
            archive.writestr(member, data)
    return path


def md5_of(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def attribute_list(names) -> str:
    rows = [f"{name} " + " ".join("1" if (i + j) % 3 == 0 else "-1" for j in range(40)) for i, name in
            enumerate(names)]
    return "\n".join([str(len(names)), " ".join(ATTRIBUTE_NAMES), *rows]) + "\n"


def override(tmp_path, **celeba) -> str:
    path = tmp_path / "override.yaml"
    path.write_text(yaml.safe_dump({"data": {"source": "celeba", "celeba": celeba}}))
    return str(path)


def test_fetch_from_archive_copies_lists_and_prepares(tmp_path):
    archive = build_zip(tmp_path / "img_align_celeba.zip")
    (tmp_path / "list_attr_celeba.txt").write_text(attribute_list(NAMES))
    out = tmp_path / "raw" / "celeba"
    main(["--params", override(tmp_path, archive=str(archive), md5=md5_of(archive)), "--out", str(out)])
    assert sorted(path.name for path in (out / IMAGE_DIR).iterdir()) == NAMES
    assert (out / "list_attr_celeba.txt").read_text() == attribute_list(NAMES)
    assert not (out / "list_eval_partition.txt").exists()
    manifest = prepare(out, tmp_path / "prepared", crop=Crop(40, 15, 148), resolutions=[16], test_fraction=0.34,
                       seed=0, source="celeba")
    assert manifest["counts"] == {"total": 6, "train": 4, "test": 2}
    assert manifest["attributes"] == list(ATTRIBUTE_NAMES)  # no Sunglasses: real CelebA has no extras file


def test_fetch_from_url(tmp_path):
    archive = build_zip(tmp_path / "served.zip")
    out = tmp_path / "celeba"
    fetch_celeba(out, archive=None, url=archive.as_uri(), md5=md5_of(archive), download=False)
    assert len(list((out / IMAGE_DIR).glob("*.jpg"))) == len(NAMES)


def test_wrong_md5_names_both_hashes_and_writes_nothing(tmp_path):
    archive = build_zip(tmp_path / "img_align_celeba.zip")
    out = tmp_path / "celeba"
    wrong = "0" * 32
    with pytest.raises(ValueError, match=rf"MD5 is {md5_of(archive)} but data.celeba.md5 expects {wrong}"):
        fetch_celeba(out, archive=str(archive), url=None, md5=wrong, download=False)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["img_align_celeba.zip"]
    assert file_md5(archive) == md5_of(archive)


@pytest.mark.parametrize("member", ["../evil.txt", "img_align_celeba/../../evil.txt", "/tmp/evil_abs.txt"])
def test_members_outside_the_target_are_refused(tmp_path, member):
    archive = build_zip(tmp_path / "img_align_celeba.zip", {member: b"gotcha"})
    out = tmp_path / "nested" / "celeba"
    with pytest.raises(ValueError, match="would be written outside the output folder"):
        fetch_celeba(out, archive=str(archive), url=None, md5=md5_of(archive), download=False)
    assert not list(tmp_path.rglob("evil*.txt"))
    assert list((tmp_path / "nested").iterdir()) == []  # no output, no temporary folder


def test_offline_without_archive_says_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data: \{source: celeba, celeba: \{archive: "):
        main(["--out", str(tmp_path / "celeba")])  # params.yaml: no archive, no url, no download
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fetch_celeba(tmp_path / "celeba", archive=str(tmp_path / "missing.zip"), url=None, md5="0" * 32,
                      download=False)
    assert list(tmp_path.iterdir()) == []


def test_not_a_celeba_zip_is_refused(tmp_path):
    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("photos/a.jpg", jpeg_bytes(0))
    with pytest.raises(ValueError, match="no img_align_celeba/"):
        fetch_celeba(tmp_path / "celeba", archive=str(archive), url=None, md5=md5_of(archive), download=False)


def test_corrupt_jpeg_in_the_zip_stops_prepare_with_its_name(tmp_path):
    archive = build_zip(tmp_path / "img_align_celeba.zip", corrupt="000004.jpg")
    out = fetch_celeba(tmp_path / "celeba", archive=str(archive), url=None, md5=md5_of(archive), download=False)
    with pytest.raises(ValueError, match=r"000004\.jpg: cannot read this image"):
        prepare(out, tmp_path / "prepared", crop=Crop(40, 15, 148), resolutions=[16], test_fraction=0.34, seed=0,
                source="celeba")
    assert not (tmp_path / "prepared").exists()
    assert not list(tmp_path.glob("prepared.tmp-*"))
