"""CelebA's metadata files (see shared/celeba-format.md): the 40 attribute names and the two list files.

Both the synthetic generator and fetch-celeba write the same tree, which `prepare` reads:
`<root>/img_align_celeba/000001.jpg ...`, `<root>/list_attr_celeba.txt` (optional for real CelebA),
`<root>/list_eval_partition.txt` (optional; prepare makes its own split) and, for synthetic faces only,
`<root>/synthetic_extras.csv`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from core.atomic import write_text

IMAGE_DIR = "img_align_celeba"
ATTRIBUTES_FILE = "list_attr_celeba.txt"
PARTITION_FILE = "list_eval_partition.txt"
EXTRAS_FILE = "synthetic_extras.csv"
IMAGE_WIDTH, IMAGE_HEIGHT = 178, 218
JPEG_SUFFIXES = (".jpg", ".jpeg")  # compared lower-cased: 000001.JPG is an image too

# In the file's order.
ATTRIBUTE_NAMES = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs", "Big_Lips",
    "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows", "Chubby", "Double_Chin",
    "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones", "Male", "Mouth_Slightly_Open",
    "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin", "Pointy_Nose", "Receding_Hairline",
    "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair", "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat",
    "Wearing_Lipstick", "Wearing_Necklace", "Wearing_Necktie", "Young",
)


def image_name(index: int) -> str:
    """0-based index -> CelebA's 1-based file name, e.g. 0 -> '000001.jpg'."""
    return f"{index + 1:06d}.jpg"


def write_attributes(path: Path, names: Sequence[str], rows: Sequence[Mapping[str, int]]) -> None:
    """CelebA's list_attr_celeba.txt: count, attribute names, then `name  v1 v2 ...` with v in {1, -1}."""
    lines = [str(len(rows)), " ".join(ATTRIBUTE_NAMES)]
    for name, row in zip(names, rows, strict=True):
        values = " ".join(f"{row[attribute]:2d}" for attribute in ATTRIBUTE_NAMES)
        lines.append(f"{name} {values}")
    write_text(path, "\n".join(lines) + "\n")


def read_attributes(path: Path) -> dict[str, dict[str, int]]:
    """{image name: {attribute: 1 or -1}}; columns split on any whitespace, as the release pads them."""
    lines = Path(path).read_text().splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path}: too short for CelebA's attribute format (count line, names line, rows)")
    names = lines[1].split()
    table: dict[str, dict[str, int]] = {}
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(names) + 1:
            raise ValueError(f"{path}:{number}: expected a file name and {len(names)} values, got {len(fields)} "
                             "fields; is this CelebA's list_attr_celeba.txt?")
        table[fields[0]] = {name: int(value) for name, value in zip(names, fields[1:], strict=True)}
    declared = lines[0].strip()
    if declared.isdigit() and int(declared) != len(table):
        raise ValueError(f"{path}: line 1 says {declared} images but {len(table)} rows follow; the file is "
                         "truncated or corrupt, copy it again")
    return table


def write_partition(path: Path, names: Sequence[str], partitions: Sequence[int]) -> None:
    """CelebA's list_eval_partition.txt: `name partition` (0 train, 1 validation, 2 test)."""
    lines = [f"{name} {partition}" for name, partition in zip(names, partitions, strict=True)]
    write_text(path, "\n".join(lines) + "\n")
