"""`lapcvae fit-prior`: fit a model's prior to its training split's posterior means (models/fitted_prior.py)."""

from __future__ import annotations

import argparse
import logging

from core.device import resolve_device
from data.arrays import load_image_array
from models.checkpoint import load_model
from models.fitted_prior import fit_prior, save_prior
from workflow.commands import add_params_arguments, doc_summary, params_from_args

logger = logging.getLogger(__name__)


def fit_prior_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae fit-prior", description=doc_summary("models.fitted_prior"))
    add_params_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="a VAE, VAE/GAN, PixelVAE or LapCVAE checkpoint (.pt)")
    parser.add_argument("--data", required=True, help="the training split, e.g. data/prepared/64/train.npy")
    parser.add_argument("--out", required=True, help="the fitted prior (.pt), e.g. results/priors/64/vae.pt")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    settings = params["eval"]["fitted_prior"]
    device = resolve_device(params["device"])
    model = load_model(args.checkpoint, device)
    resolution = int(model.config["resolution"])
    images = load_image_array(args.data, made_by="`lapcvae prepare`")  # (N, 3, H, W) uint8, memory-mapped
    if images.shape[2:] != (resolution, resolution):
        raise ValueError(f"--data {args.data} holds {images.shape[3]}x{images.shape[2]} px images, but --checkpoint "
                         f"{args.checkpoint} is a {resolution} px model; pass data/prepared/{resolution}/train.npy "
                         f"or the {images.shape[2]} px checkpoint")
    prior = fit_prior(model, images, batch_size=params["eval"]["batch_size"], ridge=float(settings["ridge"]),
                      seed=int(params["seed"]), max_images=settings["images"], device=device)
    save_prior(args.out, prior)
    print(f"fitted the prior of {args.checkpoint} to {prior.images} training images -> {args.out}")
