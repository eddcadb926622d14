"""The runner's command-line entry points: each `*_main(argv)` parses options and calls library functions.

Library packages (data/, models/, baselines/, eval/) know nothing of these; `lapcvae <command>` (workflow/cli.py)
dispatches to them.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from core.params import ParamsError, load_params
from core.paths import ROOT_KEYS, check_outputs
from workflow.locks import hold_command_lock


def doc_summary(module: str, paragraph: bool = False) -> str:
    """The first line (or paragraph) of a library module's docstring: a command's --help description."""
    doc = (importlib.import_module(module).__doc__ or "").strip()
    return doc.split("\n\n")[0] if paragraph else doc.splitlines()[0]


def add_params_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--params` option every command-line entry point takes."""
    parser.add_argument(
        "--params", "-p", action="append", default=None, metavar="YAML",
        help="override file merged over params.yaml (repeatable, later wins), e.g. config/smoke.yaml",
    )


SPLITS = {"train": "training images", "val": "validation images", "test": "test images"}


def add_split_arguments(parser: argparse.ArgumentParser, *splits: str) -> None:
    """`--res` and one `--<split>` option per prepared split the command reads (data/prepared/{res}/<split>.npy)."""
    parser.add_argument("--res", type=int, required=True, help="image resolution, e.g. 64")
    for split in splits:
        parser.add_argument(f"--{split}", required=True, help=f"{SPLITS[split]}, e.g. data/prepared/64/{split}.npy")


# The options through which a command writes (or, for some, reads results it wrote): checked before any work.
OUTPUT_OPTIONS = ("out", "out_dir", "out_csv", "out_json", "out_md", "out_html", "per_image", "cost", "figure",
                  "claims", "preview", "work_dir", "eval_dir", "per_image_dir")


def params_from_args(args: argparse.Namespace, own_root: str = "results") -> dict[str, Any]:
    """The params of `--params`, after checking that no output option overlaps code, raw data or another output
    root (`own_root`: the root the command writes: raw, prepared, or results; core/paths.py)."""
    params = load_params(*(args.params or []))
    given = []
    for name in OUTPUT_OPTIONS:
        value = getattr(args, name, None)
        for path in value if isinstance(value, list) else [value]:
            given.append((f"--{name.replace('_', '-')}", path))
    try:
        check_outputs(given, params["paths"], own_root)
    except ValueError as error:
        raise ParamsError(str(error)) from error
    # One run per working folder: refused while another run writes into the same project's outputs (workflow/locks.py).
    hold_command_lock((path for _, path in given), (params["paths"][root] for root in ROOT_KEYS))
    return params
