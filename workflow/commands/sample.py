"""Reconstruct, sample and partially sample with any checkpoint (`lapcvae reconstruct|sample|partial-sample`).

Outputs ending in .npy are uint8 (N, 3, H, W) arrays; any other suffix (.png, .jpg) is an image grid (the
figure). Image files of any size are taken: cropped to a square (`--crop centre`, the default, or `--crop celeba`
for an aligned 178x218 CelebA image) and resized to the model's side (`workflow.commands.photos`).

    lapcvae reconstruct --checkpoint results/models/128/lapcvae/level0.pt --images me.jpg --out me_pyramid.png
    lapcvae partial-sample --checkpoint results/models/128/lapcvae/level0.pt --image me.jpg --fixed-levels 2 \
        --out me_samples.png
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from core.atomic import save_image
from core.atomic import save_npy as atomic_save_npy
from core.device import resolve_device
from data.arrays import load_image_array
from data.prepare import Crop
from models.checkpoint import load_model
from models.fitted_prior import load_prior, sample_fitted
from workflow.commands import add_params_arguments, params_from_args
from workflow.commands.photos import CROPS, load_photo

logger = logging.getLogger(__name__)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> uint8 numpy, rounded."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


def read_image_file(path: str | Path, resolution: int, crop: str = "centre",
                    celeba_box: Crop | None = None) -> torch.Tensor:
    """An image file of any size -> (1, 3, resolution, resolution) float in [0, 1] (`photos.load_photo`)."""
    return load_photo(path, resolution, crop, celeba_box)


def read_npy(path: str | Path, resolution: int) -> np.ndarray:
    """A uint8 (N, 3, H, W) array (memory-mapped) checked against the model's resolution."""
    return load_image_array(path, resolution, made_by="the step that wrote it")


def read_images(paths: list[str], resolution: int, crop: str = "centre",
                celeba_box: Crop | None = None) -> torch.Tensor:
    """Any mix of .npy arrays (at the model's side) and image files (any size) -> (N, 3, H, W) float in [0, 1]."""
    batches = [torch.from_numpy(np.array(read_npy(path, resolution))).float() / 255.0 if path.endswith(".npy")
               else read_image_file(path, resolution, crop, celeba_box) for path in paths]
    return torch.cat(batches)


def add_crop_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--crop", choices=CROPS, default="centre",
                        help="how an image file becomes a square before it is resized to the model's side: "
                        "centre (default: the largest centred square of any photo) or celeba (the authors' box, "
                        "params data.crop, of an aligned 178x218 CelebA image)")


def celeba_box(params: dict) -> Crop:
    return Crop(**params["data"]["crop"])


def pyramid_rows(model, images: torch.Tensor) -> torch.Tensor:
    """LapCVAE's figure: per image, the input then the reconstruction level by level, coarse to fine, each
    upsampled to full size (the last is the reconstruction). (N * (1 + levels held), 3, H, W)."""
    held = model.levels - model.first_level
    rows = []
    device = next(model.parameters()).device
    for image in images:
        composed = model.partial_levels(image[None].to(device), held, 1, 0)  # [x_first..x_K], finest first
        rows += [image[None], *(model.to_full_size(level).clamp(0, 1).cpu() for level in reversed(composed))]
    return torch.cat(rows)


def write_output(path: str | Path, images: torch.Tensor, grid_rows: torch.Tensor | None = None,
                 nrow: int = 8) -> None:
    """Write `images` as .npy (uint8) or `grid_rows` (default `images`) as an image grid, atomically."""
    path = Path(path)
    if path.suffix == ".npy":
        atomic_save_npy(path, to_uint8(images))
        return
    grid = make_grid((images if grid_rows is None else grid_rows).clamp(0, 1).cpu(), nrow=nrow,
                     padding=2, pad_value=1.0)  # (3, H', W')
    save_image(Image.fromarray(to_uint8(grid[None])[0].transpose(1, 2, 0)), path,
               format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))


def paired_rows(inputs: torch.Tensor, outputs: torch.Tensor, per_row: int) -> torch.Tensor:
    """Alternate rows of `per_row` inputs and their outputs (white padding), for a grid with nrow=per_row."""
    padding = (-len(inputs)) % per_row
    inputs, outputs = (torch.cat([t, torch.ones(padding, *t.shape[1:])]) for t in (inputs, outputs))
    rows = [part for start in range(0, len(inputs), per_row)
            for part in (inputs[start: start + per_row], outputs[start: start + per_row])]
    return torch.cat(rows)


def _model_and_params(args: argparse.Namespace):
    params = params_from_args(args)
    device = resolve_device(params["device"])
    model = load_model(args.checkpoint, device)
    return model, params, device


def reconstruct_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae reconstruct", description="reconstruct images with a checkpoint")
    add_params_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="any model checkpoint (.pt)")
    parser.add_argument("--images", nargs="+", required=True,
                        help="uint8 (N, 3, H, W) .npy and/or image files of any size (face photos)")
    add_crop_argument(parser)
    parser.add_argument("--out", required=True,
                        help=".npy (uint8 reconstructions) or .png: for LapCVAE one row per image (input, then the "
                        "reconstruction level by level, coarse to fine), for other models rows of 8 inputs, each "
                        "over its outputs")
    args = parser.parse_args(argv)
    model, params, device = _model_and_params(args)
    images = read_images(args.images, model.config["resolution"], args.crop, celeba_box(params))  # (N, 3, H, W)
    batch_size = params["eval"]["batch_size"]
    outputs = torch.cat([model.reconstruct(images[start: start + batch_size].to(device)).cpu()
                         for start in range(0, len(images), batch_size)])
    if hasattr(model, "partial_levels"):
        held = model.levels - model.first_level
        write_output(args.out, outputs, grid_rows=pyramid_rows(model, images), nrow=1 + held)
    else:
        per_row = min(len(images), 8)
        write_output(args.out, outputs, grid_rows=paired_rows(images, outputs, per_row), nrow=per_row)
    print(f"reconstructed {len(images)} images -> {args.out}")


def sample_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae sample", description="sample images from a checkpoint")
    add_params_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="any model checkpoint (.pt)")
    parser.add_argument("--n", type=int, default=16, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--prior", help="a prior fitted by `lapcvae fit-prior` to sample from instead of N(0, I)")
    parser.add_argument("--out", required=True, help=".npy (uint8) or .png grid")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    model, _, _ = _model_and_params(args)
    if args.prior is None:
        samples = model.sample(args.n, args.seed).cpu()
    else:
        prior = load_prior(args.prior)
        prior.check_model(model, f"--prior {args.prior}")
        samples = sample_fitted(model, prior, args.n, args.seed).cpu()
    write_output(args.out, samples, nrow=min(args.n, 8))
    print(f"sampled {args.n} images -> {args.out}")


def partial_sample_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae partial-sample",
                                     description="keep an image's coarse LapCVAE levels, sample the rest (Fig. 7)")
    add_params_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="a LapCVAE checkpoint (.pt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="the input image file, any size (a face photo)")
    source.add_argument("--npy", help="uint8 (N, 3, H, W) array holding the input image")
    parser.add_argument("--index", type=int, default=0, help="row of --npy to use")
    add_crop_argument(parser)
    parser.add_argument("--fixed-levels", type=int, required=True, help="coarsest levels kept from the input")
    parser.add_argument("--n", type=int, default=8, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", required=True, help=".npy (uint8 samples) or .png (input, base, samples)")
    args = parser.parse_args(argv)
    model, params, device = _model_and_params(args)
    if not hasattr(model, "partial_sample"):
        raise ValueError(f"--checkpoint {args.checkpoint} is a {model.kind} model; partial sampling needs LapCVAE")
    resolution = model.config["resolution"]
    if args.image is not None:
        image = read_image_file(args.image, resolution, args.crop, celeba_box(params))
    else:
        array = read_npy(args.npy, resolution)
        if not 0 <= args.index < len(array):
            raise ValueError(f"--index {args.index} is outside 0..{len(array) - 1} of {args.npy}")
        image = torch.from_numpy(np.array(array[args.index: args.index + 1])).float() / 255.0
    samples, base = model.partial_sample(image.to(device), args.fixed_levels, args.n, args.seed)
    samples, base = samples.cpu(), base.cpu()
    write_output(args.out, samples, grid_rows=torch.cat([image, base, samples]), nrow=args.n + 2)
    print(f"{args.n} samples with {args.fixed_levels} fixed levels -> {args.out}")
