"""`lapcvae edit-coarse`, `edit-region`: the image-editing command lines (library: eval/editing*.py).

Each `*_main(argv)` parses its options and calls library functions with plain arguments.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.device import resolve_device
from eval.editing import (
    EditResult,
    box_mask,
    check_model,
    coarse_edit,
    coarse_image,
    paint_box,
    region_resample,
    skin_tone,
)
from eval.editing_figures import (
    edit_figure,
    load_edited_coarse,
    load_image,
    load_mask,
    pick_sunglasses_face,
    write_outputs,
)
from eval.metrics import load_images
from eval.plotting import save_figure
from models.checkpoint import load_model
from workflow.commands import add_params_arguments, params_from_args

logger = logging.getLogger(__name__)


def _parser(command: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"lapcvae {command}", description=description)
    add_params_arguments(parser)
    parser.add_argument("--checkpoint", required=True,
                        help="LapCVAE checkpoint, e.g. results/models/64/lapcvae/level0.pt")
    parser.add_argument("--out-dir", required=True, help="folder for the variant_XX.png / composite_XX.png files")
    parser.add_argument("--figure", required=True, help="PNG path of the labelled figure")
    parser.add_argument("--image", help="user mode: the face to edit (any size, resized to the model's)")
    parser.add_argument("--mask", help="user mode: mask PNG, white = region (default: the box from params)")
    parser.add_argument("--res", type=int, help="pipeline mode: resolution of the test split (default: the model's)")
    parser.add_argument("--prepared", help="pipeline mode: prepared data folder (default: params paths.prepared)")
    return parser


def _load_editing_model(args: argparse.Namespace, params: Mapping[str, Any]) -> nn.Module:
    model = load_model(args.checkpoint, resolve_device(params["device"]))
    check_model(model)
    if args.res is not None and args.res != model.config["resolution"]:
        raise ValueError(f"--res {args.res} but {args.checkpoint} is a {model.config['resolution']} px model: "
                         "pass the checkpoint of that resolution")
    if model.first_level != 0:
        raise ValueError(f"{args.checkpoint} holds only levels {model.first_level}..{model.coarsest}: "
                         "edit with the whole model (level0.pt)")
    return model


def _test_image(args: argparse.Namespace, params: Mapping[str, Any], resolution: int, row: int) -> torch.Tensor:
    """Row `row` of the prepared test split as (1, 3, res, res) float."""
    prepared = Path(args.prepared or params["paths"]["prepared"])
    images = load_images(prepared / str(resolution) / "test.npy", resolution)
    if not 0 <= row < len(images):
        raise ValueError(f"test image {row} does not exist ({len(images)} test images): "
                         "lower editing.region.image_index")
    return torch.from_numpy(np.array(images[row])).float().unsqueeze(0) / 255.0  # a copy: the split is mmapped


def _seed(params: Mapping[str, Any]) -> int:
    return params["seed"] + params["editing"]["seed_offset"]


def _finish(result: EditResult, model: nn.Module, edited_coarse: torch.Tensor | None, title: str,
            args: argparse.Namespace) -> None:
    write_outputs(result, args.out_dir)
    save_figure(edit_figure(result, model.levels, edited_coarse, title), args.figure)
    print(f"wrote {len(result.variants)} variants and composites to {args.out_dir} and {args.figure}")


def edit_coarse_main(argv: list[str] | None = None) -> None:
    parser = _parser("edit-coarse", "Figure 1: paint the coarse level of a face, sample finer levels, composite.")
    parser.add_argument("--edited", help="user mode: the painted coarse level (at its size) or a painted full image "
                                         "(default: paint the eye box with the skin tone, as in pipeline mode)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    editing = params["editing"]
    model = _load_editing_model(args, params)
    resolution, levels, fixed = model.config["resolution"], model.levels, editing["fixed_levels"]
    if args.image:
        image = load_image(args.image, resolution)
    else:
        prepared = Path(args.prepared or params["paths"]["prepared"])
        image = _test_image(args, params, resolution, pick_sunglasses_face(prepared / "attributes.csv"))
    coarse = coarse_image(image, levels, fixed)  # (1, 3, h, w)
    if args.edited:
        edited_coarse = load_edited_coarse(args.edited, resolution, levels, fixed)
    else:
        tone = skin_tone(coarse, editing["coarse"]["skin_boxes"])
        logger.info("painting the eye box with skin tone %s", [round(v, 3) for v in tone.tolist()])
        edited_coarse = paint_box(coarse, editing["coarse"]["eye_box"], tone)
    mask = load_mask(args.mask, resolution) if args.mask else box_mask(resolution, resolution,
                                                                       editing["coarse"]["eye_box"])
    result = coarse_edit(model, image, edited_coarse, mask, fixed, editing["variants"], _seed(params))
    _finish(result, model, edited_coarse, f"Coarse-level edit ({resolution} px, {fixed} levels kept)", args)


def edit_region_main(argv: list[str] | None = None) -> None:
    parser = _parser("edit-region", "Figure 9: resample a region of a face from its coarse levels, composite.")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    editing = params["editing"]
    model = _load_editing_model(args, params)
    resolution, fixed = model.config["resolution"], editing["fixed_levels"]
    if args.image:
        image = load_image(args.image, resolution)
    else:
        image = _test_image(args, params, resolution, editing["region"]["image_index"])
    mask = load_mask(args.mask, resolution) if args.mask else box_mask(resolution, resolution,
                                                                       editing["region"]["box"])
    result = region_resample(model, image, mask, fixed, editing["variants"], _seed(params))
    _finish(result, model, None, f"Region resampling ({resolution} px, {fixed} levels kept)", args)
