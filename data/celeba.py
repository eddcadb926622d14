"""`lapcvae fetch-celeba`: check and unpack the real CelebA (img_align_celeba.zip) into the tree `prepare` reads.

    lapcvae fetch-celeba --params P... --out data/raw/celeba

The archive comes from, in order: `data.celeba.archive` (a zip you already have), `data.celeba.url` (fetched
with urllib to a temporary file) or, with `data.celeba.download: true`, torchvision's Google Drive downloader
(often over quota: github.com/pytorch/vision/issues/1920). Its MD5 must equal `data.celeba.md5`. Members that
would land outside the output folder (`../x`, absolute paths) are refused before anything is written.

Attributes are optional for real CelebA: `list_attr_celeba.txt` and `list_eval_partition.txt` are copied when
they sit beside the archive (or were downloaded); without them `prepare` writes attributes.csv with only
split, row and image_id. The output is built in a temporary folder beside it (core/atomic.py) and renamed into
place.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import shutil
import tempfile
import urllib.request
import zipfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from core.atomic import atomic_directory
from core.progress import progress_bar
from data.celeba_format import ATTRIBUTES_FILE, IMAGE_DIR, JPEG_SUFFIXES, PARTITION_FILE

logger = logging.getLogger(__name__)

ARCHIVE_NAME = "img_align_celeba.zip"
LIST_FILES = (ATTRIBUTES_FILE, PARTITION_FILE)
NO_ARCHIVE_HELP = (
    "no CelebA archive configured and downloading is off. Put img_align_celeba.zip (1.4 GB, from the CelebA "
    "site's 'Align&Cropped Images') somewhere, optionally with list_attr_celeba.txt and list_eval_partition.txt "
    "beside it, and write an override file such as\n"
    "  data: {source: celeba, celeba: {archive: /path/img_align_celeba.zip}}\n"
    "then pass it with --params (or set data.celeba.url, or data.celeba.download: true when online)"
)


def file_md5(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """MD5 of a file, read in chunks with a progress bar (the archive is 1.4 GB)."""
    path = Path(path)
    digest = hashlib.md5()
    with open(path, "rb") as handle, progress_bar(total=path.stat().st_size, unit="B", unit_scale=True,
                                                  desc=f"md5 {path.name}") as progress:
        while block := handle.read(chunk_size):
            digest.update(block)
            progress.update(len(block))
    return digest.hexdigest()


def check_md5(path: Path, expected: str) -> None:
    actual = file_md5(path)
    if actual != expected.lower():
        raise ValueError(
            f"{path}: MD5 is {actual} but data.celeba.md5 expects {expected}. The archive is incomplete, "
            "corrupt or a different file: download img_align_celeba.zip again (the official MD5 is "
            "00d2c5bc6d35e252742224ab0c1e8fcb), or set data.celeba.md5 to the archive you mean to use"
        )


# The most the archive may expand to, as a multiple of its own size: CelebA's JPEGs hardly compress (its zip
# expands about 1.0x), its text lists about 8x; a zip bomb expands hundreds of times.
MAX_EXPANSION = 20


def safe_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Every member, after refusing any whose path is absolute or climbs out of the target folder, or that is
    named twice (extracting would keep only the last)."""
    members = archive.infolist()
    seen: set[str] = set()
    for member in members:
        name = member.filename.replace("\\", "/")
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
            raise ValueError(
                f"{archive.filename}: member {member.filename!r} would be written outside the output folder; "
                "refusing to extract an unsafe archive (use the official img_align_celeba.zip)"
            )
        key = str(path).rstrip("/")
        if key in seen:
            raise ValueError(f"{archive.filename}: member {member.filename!r} appears twice, and extracting would "
                             "keep only the last; rebuild the archive with each file once")
        seen.add(key)
    return members


def check_expansion(archive_path: Path, members: list[zipfile.ZipInfo], target: Path) -> None:
    """Refuse an archive that expands more than MAX_EXPANSION times its size (a zip bomb) or beyond the free
    space at `target`, before anything is extracted (zipfile never writes more than a member's stated size)."""
    expanded = sum(member.file_size for member in members)
    size = max(archive_path.stat().st_size, 1)
    if expanded > MAX_EXPANSION * size:
        raise ValueError(f"{archive_path}: its {len(members)} members expand to {expanded / 2**20:.1f} MiB, "
                         f"{expanded / size:.0f}x the archive's {size / 2**20:.1f} MiB (images expand about 1x); "
                         "refusing a likely zip bomb: use the official img_align_celeba.zip")
    existing = next(folder for folder in (target, *target.parents) if folder.is_dir())
    free = shutil.disk_usage(existing).free
    if expanded > free:
        raise OSError(errno.ENOSPC, f"{archive_path} expands to {expanded / 2**20:.1f} MiB but {target} has "
                      f"{free / 2**20:.1f} MiB free; free some space or point paths.raw at another disk")


def extract(archive_path: Path, target: Path) -> int:
    """Extract the zip into `target` after checking every member; returns the number of JPEGs."""
    try:
        archive = zipfile.ZipFile(archive_path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{archive_path} is not a zip archive ({error}); is the download complete? Delete it "
                         f"and fetch CelebA's {ARCHIVE_NAME} again") from error
    with archive:
        members = safe_members(archive)
        check_expansion(archive_path, members, target)
        images = [m for m in members if not m.is_dir() and m.filename.lower().endswith(JPEG_SUFFIXES)]
        if not any(PurePosixPath(m.filename).parts[0] == IMAGE_DIR for m in images):
            raise ValueError(f"{archive_path}: no {IMAGE_DIR}/*.jpg inside; is this CelebA's {ARCHIVE_NAME}?")
        for member in progress_bar(members, desc="extract", unit="file"):
            archive.extract(member, target)
    return len(images)


def _download_url(url: str, directory: Path) -> Path:
    destination = directory / ARCHIVE_NAME
    logger.info("downloading %s", url)
    try:
        with urllib.request.urlopen(url) as response, open(destination, "wb") as handle:
            total = int(response.headers.get("Content-Length") or 0) or None
            with progress_bar(total=total, unit="B", unit_scale=True, desc="download") as progress:
                while block := response.read(1 << 20):
                    handle.write(block)
                    progress.update(len(block))
    except OSError as error:
        raise FileNotFoundError(f"could not download {url}: {error}. {NO_ARCHIVE_HELP}") from error
    return destination


def _download_torchvision(directory: Path) -> Path:
    """torchvision's own CelebA file list (Google Drive ids and MD5s): the zip and the two list files."""
    from torchvision.datasets import CelebA
    from torchvision.datasets.utils import download_file_from_google_drive

    wanted = {ARCHIVE_NAME, *LIST_FILES}
    try:
        for file_id, md5, filename in CelebA.file_list:
            if filename in wanted:
                download_file_from_google_drive(file_id, str(directory), filename, md5)
    except Exception as error:  # network, quota and HTML-instead-of-file failures all end here
        raise FileNotFoundError(f"torchvision could not download CelebA ({error}). {NO_ARCHIVE_HELP}") from error
    return directory / ARCHIVE_NAME


def fetch_celeba(out: str | Path, *, archive: str | None, url: str | None, md5: str, download: bool) -> Path:
    """Check and unpack CelebA into `out` (replaced atomically); returns `out`."""
    out = Path(out)
    if archive is None and url is None and not download:
        raise FileNotFoundError(NO_ARCHIVE_HELP)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{out.name}.download-", dir=out.parent) as scratch:
        if archive is not None:
            archive_path = Path(archive)
            if not archive_path.is_file():
                raise FileNotFoundError(f"data.celeba.archive: {archive_path} does not exist. {NO_ARCHIVE_HELP}")
        elif url is not None:
            archive_path = _download_url(url, Path(scratch))
        else:
            archive_path = _download_torchvision(Path(scratch))
        check_md5(archive_path, md5)
        with atomic_directory(out, raw_data=True) as staging:
            count = extract(archive_path, staging)
            for name in LIST_FILES:
                beside = archive_path.with_name(name)
                if beside.is_file():
                    shutil.copyfile(beside, staging / name)
                else:
                    logger.info("%s not found beside the archive; prepare will go without it", name)
    logger.info("unpacked %d CelebA images into %s", count, out)
    return out


def write_raw(out: Path, params: Mapping[str, Any], workers: int = 1) -> Path:
    """The data-set writer (core/datasets.py): CelebA from where data.celeba says (`workers` is not used)."""
    celeba = params["data"]["celeba"]
    return fetch_celeba(out, archive=celeba["archive"], url=celeba["url"], md5=celeba["md5"],
                        download=celeba["download"])
