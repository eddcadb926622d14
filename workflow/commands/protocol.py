"""`lapcvae references`, `training-cost`, `tune`, `rate-distortion`, `budget-curve`(`-plot`): the comparison
protocol's command lines.

Library: eval/references.py, eval/cost.py, studies/tuning.py, studies/rate_distortion.py, studies/budget_curve.py
(docs/protocol.md, "How models are compared"). Each `*_main(argv)` parses its options and calls library
functions with plain arguments.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from core.atomic import save_npy
from core.atomic import write_csv as atomic_write_csv
from core.atomic import write_json as atomic_write_json
from core.atomic import write_text as atomic_write_text
from data.arrays import load_image_array
from eval.cost import write_training_cost
from eval.gaussian_bound import SPECTRUM_FILE
from eval.metrics import to_uint8
from eval.references import REFERENCES, MeanFace, build_references, evaluate_reference
from eval.sample_quality import SampleEmbedding, repeated, sample_metrics
from workflow.commands import add_params_arguments, add_split_arguments, doc_summary, params_from_args

logger = logging.getLogger(__name__)
# The studies are imported by the commands that run them: `references` and `training-cost` import no study, so
# that a change to one reruns only its own jobs (workflow/code_deps.py).


def references_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae references", description=doc_summary("eval.references"))
    add_params_arguments(parser)
    add_split_arguments(parser, "train", "test")
    parser.add_argument("--coarsest", default=None, help="LapCVAE's coarsest level, .../lapcvae/level{K}.pt")
    parser.add_argument("--only", nargs="+", choices=REFERENCES, default=None,
                        help="write only these references, e.g. lapcvae_coarsest for a further training seed (the "
                             "mean face and PCA depend on the data only)")
    parser.add_argument("--eval-dir", required=True, help="writes {res}/{name}/summary.json here, e.g. results/eval")
    parser.add_argument("--per-image-dir", required=True, help="writes {res}_{name}.csv, e.g. "
                                                               "results/metrics/per_image")
    parser.add_argument("--embedding", default=None,
                        help="the resolution's sample embedding (results/eval/64/sample_embedding.npz): scores "
                             "eval.samples copies of the mean face as samples (precision, recall, fd_embedding)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    embedding = SampleEmbedding.load(args.embedding, args.res) if args.embedding else None
    train_images = load_image_array(args.train, args.res)
    test_images = load_image_array(args.test, args.res)
    latent = sum(params["lapcvae"][str(args.res)]["latent_dims"])
    for name, reference in build_references(params, args.res, train_images, args.coarsest,
                                            args.only or REFERENCES).items():
        per_image, summary = evaluate_reference(reference, test_images, params["eval"]["batch_size"],
                                                params["eval"]["bootstrap_samples"], params["seed"])
        summary = {"model": name, "kind": "reference", "resolution": args.res, **summary,
                   "parameters": None, "flops_per_image": None, "train_seconds": None,
                   "latent_dims": {"mean_face": 0, "pca": latent}.get(name),
                   "n_train": len(train_images)}
        if embedding is not None and isinstance(reference, MeanFace):  # the sample set with no diversity at all
            faces = repeated(to_uint8(reference.face[None])[0], params["eval"]["samples"])
            summary.update(sample_metrics(embedding, test_images, faces, params["eval"]["sample_quality"]["k"]))
        atomic_write_csv(Path(args.per_image_dir) / f"{args.res}_{name}.csv", per_image)
        atomic_write_json(Path(args.eval_dir) / str(args.res) / name / "summary.json", summary)
        if getattr(reference, "spectrum", None) is not None:  # PCA's: the linear-Gaussian bound's (eval.gaussian_bound)
            save_npy(Path(args.eval_dir) / str(args.res) / name / SPECTRUM_FILE, reference.spectrum.numpy())
        logger.info("%s at %d px: RMSE %.2f on %d test images", name, args.res, summary["rmse_mean"],
                    summary["n_test"])


def training_cost_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae training-cost", description=doc_summary("eval.cost"))
    parser.add_argument("--checkpoints", nargs="+", required=True,
                        help="every training job's checkpoint of one model (LapCVAE: each level{k}.pt, ...)")
    parser.add_argument("--out", required=True, help="JSON to write, e.g. results/eval/64/lapcvae/cost.json")
    args = parser.parse_args(argv)
    write_training_cost(args.checkpoints, args.out)


def tune_main(argv: list[str] | None = None) -> None:
    from studies.tuning import TUNED_MODELS, override_file, tune, tune_seeds

    parser = argparse.ArgumentParser(prog="lapcvae tune", description=doc_summary("studies.tuning"))
    add_params_arguments(parser)
    add_split_arguments(parser, "train", "val")
    parser.add_argument("--model", required=True, choices=TUNED_MODELS, help="the model whose settings to tune")
    parser.add_argument("--out-dir", required=True, help="writes {model}.csv, {model}.json, {model}.yaml here, "
                                                         "e.g. results/tuning/64")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    trials, chosen = tune(params, args.res, load_image_array(args.train, args.res),
                          load_image_array(args.val, args.res), args.out_dir, models=[args.model])
    out_dir, seeds = Path(args.out_dir), tune_seeds(params)
    atomic_write_csv(out_dir / f"{args.model}.csv", trials)
    scores = {key: {column: float(row[column]) for column in ("fit", "sample_precision", "sample_recall")}
              for key in chosen for _, row in trials[trials["key"].str.startswith(key) & trials["chosen"]]
              .tail(1).iterrows()}
    atomic_write_json(out_dir / f"{args.model}.json", {
        "resolution": args.res, "model": args.model, "epochs": params["tune"]["epochs"],
        "trials_per_key": params["tune"]["trials"], "sample_margin": params["tune"]["sample_margin"],
        "seeds": seeds,
        "scored_on": "validation split (val.npy): fit = RMSE 0-255 of the quantised reconstruction (-ELBO in nats "
                     "for a model whose reconstruction is not scored); fitted-prior samples' precision and recall",
        "chosen": chosen, "scores_of_chosen": scores})
    header = (f"# Chosen by `lapcvae tune` on the validation split ({len(trials)} trials, "
              f"{params['tune']['epochs']} epochs each from seeds {', '.join(map(str, seeds))}); merge with "
              f"--params or copy into params.yaml.\n")
    atomic_write_text(out_dir / f"{args.model}.yaml",
                      header + yaml.safe_dump(override_file(chosen), sort_keys=False))
    logger.info("tuned %s at %d px: %s", args.model, args.res, chosen)


def rate_distortion_main(argv: list[str] | None = None) -> None:
    from studies.rate_distortion import check_claim_inputs, matched_rate_claims, plot, sweep

    parser = argparse.ArgumentParser(prog="lapcvae rate-distortion",
                                     description=doc_summary("studies.rate_distortion"))
    add_params_arguments(parser)
    add_split_arguments(parser, "train", "test")
    parser.add_argument("--embedding", required=True,
                        help="the resolution's sample embedding (results/eval/64/sample_embedding.npz): the swept "
                             "models' fitted-prior samples are scored in it against the test images")
    parser.add_argument("--work-dir", required=True, help="where the swept models' checkpoints go")
    parser.add_argument("--out-csv", required=True, help="e.g. results/metrics/rate_distortion_64.csv")
    parser.add_argument("--claims", required=True, help="the matched-rate claims against the VAE, e.g. "
                                                        "results/metrics/rate_distortion_64_claims.csv")
    parser.add_argument("--figure", required=True, help="e.g. results/figures/rate_distortion_64.png")
    parser.add_argument("--spectrum", default=None, help="the PCA reference's spectrum.npy (`lapcvae references`): "
                                                         "draws the linear-Gaussian bound (eval/gaussian_bound.py)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    check_claim_inputs(params, args.res)
    embedding = SampleEmbedding.load(args.embedding, args.res)
    spectrum = np.load(args.spectrum) if args.spectrum else None
    table = sweep(params, args.res, load_image_array(args.train, args.res), load_image_array(args.test, args.res),
                  embedding, args.work_dir)
    claims = matched_rate_claims(table)
    atomic_write_csv(args.out_csv, table)
    atomic_write_csv(args.claims, claims)
    plot(table, args.res, args.figure, spectrum)
    for _, claim in claims.iterrows():
        logger.info("%s vs VAE at %.1f nats (%s, %s): %s difference %+.4g, p %.3g, Holm p %.3g, %s", claim["model"],
                    claim["rate_nats"], claim["metric"], claim["role"], claim["test"], claim["mean_diff"],
                    claim["p_value"], claim["p_holm"], "supported" if claim["supported"] else "not supported")


def budget_curve_main(argv: list[str] | None = None) -> None:
    from studies import budget_curve

    parser = argparse.ArgumentParser(prog="lapcvae budget-curve", description=doc_summary("studies.budget_curve"))
    add_params_arguments(parser)
    add_split_arguments(parser, "train", "val", "test")
    parser.add_argument("--model", required=True, choices=["vae", "vaegan", "lapcvae"], help="the model to retrain")
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data stay those of params' seed)")
    parser.add_argument("--work-dir", required=True, help="where the retrained models' checkpoints go")
    parser.add_argument("--out-csv", required=True, help="e.g. results/budget_curve/64/vae.csv")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    table = budget_curve.curve(params, args.model, args.res, load_image_array(args.train, args.res),
                               load_image_array(args.val, args.res), load_image_array(args.test, args.res),
                               args.work_dir, seed=args.seed)
    atomic_write_csv(args.out_csv, table)


def budget_curve_plot_main(argv: list[str] | None = None) -> None:
    from studies import budget_curve

    parser = argparse.ArgumentParser(prog="lapcvae budget-curve-plot", description=doc_summary("studies.budget_curve"))
    add_params_arguments(parser)
    add_split_arguments(parser, "train", "test")  # PCA's reference line: fitted on train, scored on test
    parser.add_argument("--tables", nargs="+", required=True, help="the models' curves (lapcvae budget-curve)")
    parser.add_argument("--out-csv", required=True, help="e.g. results/metrics/budget_curve_64.csv")
    parser.add_argument("--figure", required=True, help="e.g. results/figures/budget_curve_64.png")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    pca = budget_curve.pca_rmse(params, args.res, load_image_array(args.train, args.res),
                                load_image_array(args.test, args.res))
    table = budget_curve.combine([pd.read_csv(path) for path in args.tables], pca)
    atomic_write_csv(args.out_csv, table)
    budget_curve.plot(table, args.res, pca, args.figure)
