"""Reconstruct, sample and partially sample with any checkpoint (`lapcvae reconstruct|sample|partial-sample`).

Outputs ending in .npy are uint8 (N, 3, H, W) arrays; any other suffix (.png, .jpg) is an image grid.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.utils import make_grid

from core.atomic import save_image
from core.atomic import save_npy as atomic_save_npy
from data.arrays import load_image_array, rgb_pixels
from models.checkpoint import load_model
from models.training import resolve_device
from workflow.commands import add_params_arguments, params_from_args

logger = logging.getLogger(__name__)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) float in [0, 1] -> uint8 numpy, rounded."""
    return images.clamp(0, 1).mul(255).round().to(torch.uint8).cpu().numpy()


def read_image_file(path: str | Path, resolution: int) -> torch.Tensor:
    """An RGB image file of resolution x resolution -> (1, 3, H, W) float in [0, 1]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} does not exist: pass an existing image file")
    try:
        with Image.open(path) as image:
            pixels = rgb_pixels(image, path)  # (H, W, 3) uint8, 16-bit files scaled
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as error:
        raise ValueError(f"image {path} cannot be decoded ({error}); pass a valid PNG or JPEG") from error
    if pixels.shape[:2] != (resolution, resolution):
        raise ValueError(f"image {path} is {pixels.shape[1]}x{pixels.shape[0]}, the model takes "
                         f"{resolution}x{resolution}; resize it or use the matching checkpoint")
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float() / 255.0


def read_npy(path: str | Path, resolution: int) -> np.ndarray:
    """A uint8 (N, 3, H, W) array (memory-mapped) checked against the model's resolution."""
    return load_image_array(path, resolution, made_by="the step that wrote it")


def read_images(paths: list[str], resolution: int) -> torch.Tensor:
    """Any mix of .npy arrays and image files -> (N, 3, H, W) float in [0, 1]."""
    batches = [torch.from_numpy(np.array(read_npy(path, resolution))).float() / 255.0 if path.endswith(".npy")
               else read_image_file(path, resolution) for path in paths]
    return torch.cat(batches)


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
    parser.add_argument("--images", nargs="+", required=True, help="uint8 (N, 3, H, W) .npy and/or image files")
    parser.add_argument("--out", required=True,
                        help=".npy (uint8 reconstructions) or .png (rows of 8 inputs, each over its outputs)")
    args = parser.parse_args(argv)
    model, params, device = _model_and_params(args)
    images = read_images(args.images, model.config["resolution"])  # (N, 3, H, W)
    batch_size = params["eval"]["batch_size"]
    outputs = torch.cat([model.reconstruct(images[start: start + batch_size].to(device)).cpu()
                         for start in range(0, len(images), batch_size)])
    per_row = min(len(images), 8)
    write_output(args.out, outputs, grid_rows=paired_rows(images, outputs, per_row), nrow=per_row)
    print(f"reconstructed {len(images)} images -> {args.out}")


def sample_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae sample", description="sample images from a checkpoint")
    add_params_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="any model checkpoint (.pt)")
    parser.add_argument("--n", type=int, default=16, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", required=True, help=".npy (uint8) or .png grid")
    args = parser.parse_args(argv)
    if args.n < 1:
        raise ValueError(f"--n must be at least 1, got {args.n}")
    model, _, _ = _model_and_params(args)
    samples = model.sample(args.n, args.seed).cpu()
    write_output(args.out, samples, nrow=min(args.n, 8))
    print(f"sampled {args.n} images -> {args.out}")


def partial_sample_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae partial-sample",
                                     description="keep an image's coarse LapCVAE levels, sample the rest (Fig. 7)")
    add_params_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="a LapCVAE checkpoint (.pt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--image", help="the input image file")
    source.add_argument("--npy", help="uint8 (N, 3, H, W) array holding the input image")
    parser.add_argument("--index", type=int, default=0, help="row of --npy to use")
    parser.add_argument("--fixed-levels", type=int, required=True, help="coarsest levels kept from the input")
    parser.add_argument("--n", type=int, default=8, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", required=True, help=".npy (uint8 samples) or .png (input, base, samples)")
    args = parser.parse_args(argv)
    model, _, device = _model_and_params(args)
    if not hasattr(model, "partial_sample"):
        raise ValueError(f"--checkpoint {args.checkpoint} is a {model.kind} model; partial sampling needs LapCVAE")
    resolution = model.config["resolution"]
    if args.image is not None:
        image = read_image_file(args.image, resolution)
    else:
        array = read_npy(args.npy, resolution)
        if not 0 <= args.index < len(array):
            raise ValueError(f"--index {args.index} is outside 0..{len(array) - 1} of {args.npy}")
        image = torch.from_numpy(np.array(array[args.index: args.index + 1])).float() / 255.0
    samples, base = model.partial_sample(image.to(device), args.fixed_levels, args.n, args.seed)
    samples, base = samples.cpu(), base.cpu()
    write_output(args.out, samples, grid_rows=torch.cat([image, base, samples]), nrow=args.n + 2)
    print(f"{args.n} samples with {args.fixed_levels} fixed levels -> {args.out}")
