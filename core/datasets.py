"""The one table of the suite's data sets: which data sets `data.source` may name, and the function that writes each.

A data set is a plugin, in the spirit of nanoGPT's `data/<name>/prepare.py`: one module in `data/` with one
writer function, one `DatasetSpec` in DATASETS below, and a schema fragment for its params (docs/extending.md, "Adding a
data set"). The writer turns the data set into a CelebA-format raw tree, which `lapcvae prepare` then crops,
resizes and splits like any other:

    def write_raw(out: Path, params: Mapping[str, Any], workers: int = 1) -> Path:
        '''Write <out>/img_align_celeba/*.jpg (aligned 178x218 faces, or set data.crop for your size) and,
        optionally, <out>/list_attr_celeba.txt; replace `out` atomically
        (core.atomic.atomic_directory(out, raw_data=True)).'''

`params` is the whole validated params tree: a data set reads its own section `data.<name>` (validated by
`core/schemas/datasets/<name>.schema.yaml`) and `seed`. This module names writers as "module:function" strings
and imports nothing from `data/`, so that params validation (core) can read the list of names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas" / "datasets"
GENERIC_RULE = "raw_data"  # `lapcvae raw-data --source NAME`: the Snakemake rule that writes any data set's tree


@dataclass(frozen=True)
class DatasetSpec:
    """One data set: the value of `data.source`, the folder `paths.raw/<name>` and the section `data.<name>`."""

    name: str
    writer: str  # "module:function", called as function(out, params, workers) -> out
    description: str  # one line, shown by `lapcvae raw-data --help`
    rule: str = GENERIC_RULE  # the Snakemake rule that writes its tree (the first two keep their own names)


# Every data set `data.source` may name.
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in [
    DatasetSpec("synthetic", "data.synthetic:write_raw", "procedural synthetic faces (data/faces.py), no download",
                rule="generate_faces"),
    DatasetSpec("celeba", "data.celeba:write_raw", "CelebA's aligned faces from img_align_celeba.zip",
                rule="fetch_celeba"),
    # Add a data set here (docs/extending.md, "Adding a data set"), e.g.
    # DatasetSpec("mydata", "data.mydata:write_raw", "my faces"), with core/schemas/datasets/mydata.schema.yaml.
]}


def names() -> list[str]:
    return list(DATASETS)


def spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)} (add one in "
                         "core/datasets.py)")
    return DATASETS[name]


def written_by(rule: str) -> list[str]:
    """The data sets whose raw tree one Snakemake rule writes."""
    return [name for name, dataset in DATASETS.items() if dataset.rule == rule]


def writer(name: str) -> Callable[..., Path]:
    """The data set's writer function, imported on first use."""
    module, function = spec(name).writer.split(":")
    return getattr(importlib.import_module(module), function)


def schema_fragments() -> dict[str, Any]:
    """{name: schema of `data.<name>`} for every registered data set that has a fragment."""
    import yaml

    return {name: yaml.safe_load((SCHEMA_DIR / f"{name}.schema.yaml").read_text()) for name in DATASETS
            if (SCHEMA_DIR / f"{name}.schema.yaml").is_file()}


def write_raw(name: str, out: str | Path, params: Any, workers: int = 1) -> Path:
    """Write data set `name`'s CelebA-format raw tree to `out` with its registered writer."""
    return writer(name)(Path(out), params, workers=workers)
