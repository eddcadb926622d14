"""Where the suite may write: an output never overlaps the code, the raw data or another output.

`atomic_directory` replaces a folder whole, so an output path that is (or holds) a code package, the raw images
or another output root deletes them. `check_roots` checks the configured roots (`paths.*` in params) when params
load; `check_output` checks a command's output paths (`--out`, `--out-dir`) before the command does any work;
`destroyed_content` tells `atomic_directory` what an existing folder holds that must not be replaced.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# The project's own folders and files: no output may be, or hold, any of them.
CODE_NAMES = ("baselines", "benchmarks", "config", "core", "data", "docs", "eval", "models", "profiles", "tests",
              "workflow", ".git", ".dvc", ".ci", "Snakefile", "Makefile", "params.yaml", "dvc.yaml", "dvc.lock",
              "pyproject.toml", "README.md")
CODE_SUFFIXES = (".py", ".smk")  # a folder holding any of these holds code
CODE_MARKERS = (".git", "Snakefile", "pyproject.toml", "params.yaml")  # ... and so does one holding these
# Every raw data set is a CelebA-format tree (core/datasets.py); these entries mark one (or its archive).
RAW_MARKERS = ("img_align_celeba", "list_eval_partition.txt", "list_attr_celeba.txt", "img_align_celeba.zip")
ROOT_KEYS = ("raw", "prepared", "results")


def _resolved(path: str | Path) -> Path:
    return Path(os.path.abspath(Path(path).expanduser())).resolve()


def _within(inner: Path, outer: Path) -> bool:
    """Whether `inner` is `outer` or lies under it (both resolved)."""
    return inner == outer or outer in inner.parents


def code_locations() -> list[Path]:
    """The repository's code folders and files: its named ones plus any top-level package (a new model's)."""
    packages = [entry for entry in REPO_ROOT.iterdir() if (entry / "__init__.py").is_file()]
    return sorted({REPO_ROOT / name for name in CODE_NAMES} | set(packages))


def _code_clash(path: Path) -> Path | None:
    """The code location `path` would replace: the repository itself, a code folder it holds, or a code file."""
    if _within(REPO_ROOT, path):
        return REPO_ROOT
    for location in code_locations():
        if _within(location, path):
            return location
    if path.suffix in CODE_SUFFIXES:
        return path
    return None


def check_roots(paths: Mapping[str, str]) -> None:
    """`paths.raw`, `paths.prepared`, `paths.results`: none holds code, and none lies inside or holds another."""
    resolved = {key: _resolved(paths[key]) for key in ROOT_KEYS if key in paths}
    for key, path in resolved.items():
        clash = _code_clash(path)
        if clash is not None:
            raise ValueError(f"paths.{key}: {paths[key]} would hold or replace the project's {clash}; point it at "
                             f"a folder of its own, e.g. the default {_default(key)}")
    for key, path in resolved.items():
        for other, other_path in resolved.items():
            if key != other and _within(other_path, path):
                relation = "is" if other_path == path else "holds"
                raise ValueError(f"paths.{key}: {paths[key]} {relation} paths.{other} ({paths[other]}), so writing "
                                 f"one would delete the other; give each its own folder, e.g. the defaults "
                                 f"{_default(key)} and {_default(other)}")


def _default(key: str) -> str:
    return {"raw": "data/raw", "prepared": "data/prepared", "results": "results"}[key]


def check_output(path: str | Path, paths: Mapping[str, str], option: str = "--out",
                 own_root: str = "results") -> None:
    """One command's output `path`: it holds no code and no configured root, is no root (but paths.prepared for
    `prepare`; `own_root`: raw for a raw data set, prepared for `prepare`, else results) and lies inside the raw
    data only when it is a raw data set. Raise ValueError naming the path and the fix."""
    target = _resolved(path)
    clash = _code_clash(target)
    if clash is not None:
        raise ValueError(f"{option} {path}: it would hold or replace the project's {clash}; write under "
                         f"{paths.get('results', 'results')} (or a folder outside the project) instead")
    for key in ROOT_KEYS:
        if key not in paths:
            continue
        root = _resolved(paths[key])
        if root in target.parents:
            if key == "raw" and own_root != "raw":
                raise ValueError(f"{option} {path}: it lies inside the raw data (paths.raw: {paths[key]}); write "
                                 f"under {paths.get('results', 'results')} instead")
        elif target == root and not key == own_root == "prepared":  # only prepare's folder is a root itself
            raise ValueError(f"{option} {path}: it is paths.{key} itself, which writing it would replace whole; "
                             f"pass a folder of its own under {paths[key]}")
        elif target in root.parents:
            raise ValueError(f"{option} {path}: it holds paths.{key} ({paths[key]}), which writing it would "
                             f"delete; pass a folder of its own, e.g. one under {paths[key]}")


def destroyed_content(folder: Path, keep_raw: bool = False) -> Path | None:
    """The first code file (or, unless `keep_raw`, raw-data entry) inside `folder`: what replacing it would delete."""
    if _code_clash(_resolved(folder)) is not None:
        return folder
    for current, folders, files in os.walk(folder):
        for name in [*folders, *files]:
            if name in CODE_MARKERS or name.endswith(CODE_SUFFIXES) or (not keep_raw and name in RAW_MARKERS):
                return Path(current) / name
    return None


def check_outputs(outputs: Iterable[tuple[str, str | Path | None]], paths: Mapping[str, str],
                  own_root: str = "results") -> None:
    """`check_output` for each (option, path) a command was given (None: not given)."""
    for option, path in outputs:
        if path is not None:
            check_output(path, paths, option, own_root)
