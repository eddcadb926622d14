"""`lapcvae generate-faces`, `fetch-celeba`, `prepare`: the data steps' command lines (library: data/).

Each `*_main(argv)` parses its options and calls library functions with plain arguments.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from core import datasets
from data.celeba import fetch_celeba
from data.celeba_format import (
    IMAGE_DIR,
)
from data.prepare import Crop, prepare
from data.synthetic import generate, save_grid
from workflow.commands import add_params_arguments, doc_summary, params_from_args

logger = logging.getLogger(__name__)


def generate_faces_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae generate-faces",
                                     description=doc_summary("data.synthetic", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="output folder, e.g. data/raw/synthetic")
    parser.add_argument("--count", type=int, default=None, help="number of faces (default: data.synthetic.count)")
    parser.add_argument("--workers", type=int, default=1, help="processes drawing faces in parallel (default 1)")
    parser.add_argument("--preview", type=Path, default=None,
                        help="also save an 8x8 grid of the first faces, cropped and resized as prepare does")
    args = parser.parse_args(argv)
    params = params_from_args(args, own_root="raw")
    synthetic = params["data"]["synthetic"]
    count = synthetic["count"] if args.count is None else args.count
    out = generate(args.out, count=count, seed=params["seed"], jpeg_quality=synthetic["jpeg_quality"],
                   workers=max(1, args.workers))
    if args.preview is not None:
        crop = params["data"]["crop"]
        box = (crop["left"], crop["top"], crop["left"] + crop["size"], crop["top"] + crop["size"])
        save_grid(out / IMAGE_DIR, args.preview, crop_box=box, tile_size=max(params["data"]["resolutions"]))
    print(f"{count} faces in {out}")


def fetch_celeba_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae fetch-celeba",
                                     description=doc_summary("data.celeba", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="output folder, e.g. data/raw/celeba")
    args = parser.parse_args(argv)
    celeba = params_from_args(args, own_root="raw")["data"]["celeba"]
    out = fetch_celeba(args.out, archive=celeba["archive"], url=celeba["url"], md5=celeba["md5"],
                       download=celeba["download"])
    print(f"CelebA in {out}")


def raw_data_main(argv: list[str] | None = None) -> None:
    """`lapcvae raw-data --source NAME --out DIR`: the CelebA-format tree of any data set in core/datasets.py."""
    listing = "; ".join(f"{name}: {spec.description}" for name, spec in datasets.DATASETS.items())
    parser = argparse.ArgumentParser(prog="lapcvae raw-data",
                                     description="Write a registered data set's CelebA-format raw tree, which "
                                                 f"`lapcvae prepare` reads. Data sets: {listing}.")
    add_params_arguments(parser)
    parser.add_argument("--source", choices=datasets.names(), default=None,
                        help="the data set (default: data.source)")
    parser.add_argument("--out", required=True, type=Path, help="output folder, e.g. data/raw/<source>")
    parser.add_argument("--workers", type=int, default=1, help="processes, where the writer uses them (default 1)")
    args = parser.parse_args(argv)
    params = params_from_args(args, own_root="raw")
    source = args.source or params["data"]["source"]
    out = datasets.write_raw(source, args.out, params, workers=max(1, args.workers))
    print(f"{source} in {out}")


def prepare_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae prepare",
                                     description=doc_summary("data.prepare", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--raw", required=True, type=Path, help="CelebA-format tree, e.g. data/raw/synthetic")
    parser.add_argument("--out", required=True, type=Path, help="output folder, e.g. data/prepared")
    parser.add_argument("--workers", type=int, default=1, help="processes decoding images (default 1)")
    args = parser.parse_args(argv)
    params = params_from_args(args, own_root="prepared")
    data = params["data"]
    manifest = prepare(args.raw, args.out, crop=Crop(**data["crop"]), resolutions=data["resolutions"],
                       test_fraction=data["test_fraction"], seed=params["seed"], source=data["source"],
                       workers=max(1, args.workers), batch_size=params["train"]["batch_size"],
                       validation_fraction=data["validation_fraction"])
    counts = manifest["counts"]
    print(f"{counts['train']} train / {counts.get('val', 0)} validation / {counts['test']} test images in {args.out}")
