"""`lapcvae train-level`, `retrain-m`, `train-baseline`: the training command lines (library: models/, baselines/).

Each `*_main(argv)` parses its options and calls library functions with plain arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from core.registry import retrain_source
from eval.metrics import expected_checkpoint
from models.checkpoint import add_meta, load_checkpoint, load_model, pyramid_train_seconds
from models.lapcvae import PriorRetrainer
from training.baseline_jobs import BASELINES, load_train_images, train_baseline
from training.lapcvae_jobs import VARIANTS, load_images, resolution_params, retrain_m_settings, train_level
from training.loop import fit, paired_seeds
from workflow.commands import add_params_arguments, doc_summary, params_from_args

logger = logging.getLogger(__name__)


def record_pyramid_seconds(checkpoint: str | Path, seconds: float) -> None:
    """Store the training time of the whole pyramid a checkpoint holds (its job's plus the one it built on).

    Only the main process writes (the one that saved the checkpoint under torchrun).
    """
    if int(os.environ.get("RANK", "0")) == 0:
        add_meta(checkpoint, pyramid_train_seconds=seconds)


def train_level_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae train-level", description="train one LapCVAE pyramid level")
    add_params_arguments(parser)
    parser.add_argument("--res", type=int, required=True, help="image resolution, e.g. 64")
    parser.add_argument("--variant", choices=sorted(VARIANTS), required=True, help="with or without M")
    parser.add_argument("--level", type=int, required=True, help="pyramid level k (0 = finest)")
    parser.add_argument("--data", required=True, help="prepared uint8 training images (N, 3, res, res) .npy")
    parser.add_argument("--out", required=True, help="checkpoint to write, e.g. .../level{k}.pt")
    parser.add_argument("--coarser", default=None, help="checkpoint of level k+1 (required unless k = K)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    resolution_params(params, args.res)  # a missing params section is named before the data is read
    _, meta = train_level(params, args.res, args.variant, args.level, args.coarser,
                          load_images(args.data, args.res), args.out)
    coarser_seconds = pyramid_train_seconds(load_checkpoint(args.coarser)["meta"]) if args.coarser else 0.0
    record_pyramid_seconds(args.out, meta["train_seconds"] + (coarser_seconds or 0.0))


def retrain_m_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae retrain-m",
                                     description="retrain only the M networks of a trained LapCVAE (Figure 8)")
    add_params_arguments(parser)
    parser.add_argument("--res", type=int, required=True, help="image resolution, e.g. 64")
    parser.add_argument("--checkpoint", required=True, help="the whole trained model, .../lapcvae/level0.pt")
    parser.add_argument("--data", required=True, help="prepared uint8 training images (N, 3, res, res) .npy")
    parser.add_argument("--out", required=True, help="checkpoint to write, e.g. .../lapcvae/retrained_m.pt")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    resolution_params(params, args.res)
    model = load_model(args.checkpoint, **expected_checkpoint(retrain_source(), args.res))  # the whole LapCVAE
    meta = fit(PriorRetrainer(model), load_images(args.data, args.res),
               settings=retrain_m_settings(params, args.res),
               seed=paired_seeds(params["seed"], args.res)[1], output=args.out, export=model,
               device=params["device"], name=f"{args.res}/lapcvae/retrain_m")
    record_pyramid_seconds(args.out, meta["train_seconds"] + (pyramid_train_seconds(model.meta) or 0.0))


def train_baseline_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae train-baseline",
                                     description=doc_summary("training.baseline_jobs", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--model", required=True, choices=sorted(BASELINES), help="which baseline to train")
    parser.add_argument("--res", required=True, type=int, help="image resolution in pixels, e.g. 64")
    parser.add_argument("--data", required=True, type=Path, help="prepared training images, {res}/train.npy")
    parser.add_argument("--out", required=True, type=Path, help="checkpoint to write, e.g. .../vae/model.pt")
    args = parser.parse_args(argv)

    params = params_from_args(args)
    _, summary = train_baseline(params, args.model, args.res, load_train_images(args.data, args.res), args.out)
    logger.info("trained %s: %s", args.out, summary)
