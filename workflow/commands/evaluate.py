"""`lapcvae evaluate`, `table`, `neighbours`, `figures`, `report`: the evaluation command lines (library: eval/).

Each `*_main(argv)` parses its options and calls library functions with plain arguments.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from core.atomic import write_csv as atomic_write_csv
from core.atomic import write_json as atomic_write_json
from core.atomic import write_text as write_text_atomically
from core.device import resolve_device
from eval.cost import write_training_cost
from eval.evaluation import evaluate_checkpoint
from eval.metrics import (
    MODELS,
    expected_checkpoint,
    load_images,
)
from eval.sample_quality import (
    TRAINING_IMAGES,
    SampleEmbedding,
    fit_embedding,
    sample_metrics,
    training_reference,
)
from models.checkpoint import load_model
from models.fitted_prior import load_prior
from workflow.commands import add_params_arguments, doc_summary, params_from_args

logger = logging.getLogger(__name__)
# Each command imports the library modules only it uses (figures, neighbours, table, report): every job is a
# fresh process, and matplotlib and friends cost `evaluate` (one job per model) a second of CPU each.


def evaluate_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae evaluate",
                                     description=doc_summary("eval.evaluation", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--res", type=int, required=True, help="image resolution, e.g. 64")
    parser.add_argument("--model", required=True, choices=MODELS, help="the model's name in Table 1")
    parser.add_argument("--checkpoint", required=True, help="e.g. results/models/64/lapcvae/level0.pt")
    parser.add_argument("--test", required=True, help="prepared test split, e.g. data/prepared/64/test.npy")
    parser.add_argument("--out-dir", required=True, help="e.g. results/eval/64/lapcvae")
    parser.add_argument("--per-image", required=True, help="e.g. results/metrics/per_image/64_lapcvae.csv")
    parser.add_argument("--training-checkpoints", nargs="+", default=None,
                        help="with --cost: every training job's checkpoint of the model (LapCVAE: each "
                             "level{k}.pt, ...), whose training cost (eval/cost.py) goes to --cost")
    parser.add_argument("--cost", default=None, help="JSON to write, e.g. results/eval/64/lapcvae/cost.json")
    parser.add_argument("--embedding", default=None,
                        help="the sample embedding of --res, e.g. results/eval/64/sample_embedding.npz: adds "
                             "sample precision, recall and fd_embedding against the test split "
                             "(eval/sample_quality.py)")
    parser.add_argument("--prior", default=None,
                        help="the model's fitted prior, e.g. results/priors/64/vae.pt (`lapcvae fit-prior`): also "
                             "draws samples_fitted.npy from it and scores them as fitted_* (models/fitted_prior.py)")
    args = parser.parse_args(argv)
    if (args.training_checkpoints is None) != (args.cost is None):
        parser.error("--training-checkpoints and --cost go together: pass both (the training cost) or neither")
    params = params_from_args(args)
    device = resolve_device(params["device"])
    test_images = load_images(args.test, args.res)
    embedding = SampleEmbedding.load(args.embedding, args.res) if args.embedding else None  # before the work
    model = load_model(args.checkpoint, device, **expected_checkpoint(args.model, args.res))
    prior = load_prior(args.prior) if args.prior else None
    if prior is not None:
        prior.check_model(model, f"--prior {args.prior}")
    per_image, summary = evaluate_checkpoint(model, args.model, args.res, test_images, params, device,
                                             Path(args.out_dir), embedding=embedding, prior=prior,
                                             checkpoint=args.checkpoint)
    atomic_write_csv(args.per_image, per_image)
    if args.cost is not None:
        # In this job rather than one of its own: a job costs seconds of imports; after the metrics and samples,
        # which it leaves untouched (it seeds torch for its own FLOP count).
        write_training_cost(args.training_checkpoints, args.cost)
    atomic_write_json(Path(args.out_dir) / "summary.json", summary)  # last: its presence means the rest is complete
    rmse = ("RMSE withheld (greedy decoding)" if summary["rmse_mean"] is None else
            f"RMSE {summary['rmse_mean']:.2f} +- {summary['rmse_std']:.2f} "
            f"(95% CI {summary['rmse_ci95'][0]:.2f}-{summary['rmse_ci95'][1]:.2f})")
    print(f"{args.model} {args.res}px: {rmse}, -ELBO {summary['nelbo_mean']:.1f} nats "
          f"({summary['nelbo_bits_per_dim']:.4f} bits/dim) on {summary['n_test']} images"
          + (f"; {summary['sample_count']} samples: precision {summary['sample_precision']:.3f}, recall "
             f"{summary['sample_recall']:.3f}, fd_embedding {summary['fd_embedding']:.3f}" if embedding else ""))


def sample_embedding_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae sample-embedding",
                                     description=doc_summary("eval.sample_quality", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--res", type=int, required=True, help="image resolution, e.g. 64")
    parser.add_argument("--train", required=True, help="the split the embedding is fitted on, e.g. "
                                                       "data/prepared/64/train.npy")
    parser.add_argument("--test", required=True, help="the split samples are scored against, e.g. "
                                                      "data/prepared/64/test.npy")
    parser.add_argument("--out", required=True, help="e.g. results/eval/64/sample_embedding.npz")
    parser.add_argument("--reference-dir", required=True,
                        help=f"writes the real-image reference row's summary.json here, e.g. "
                             f"results/eval/64/{TRAINING_IMAGES}: eval.samples training images scored as samples")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    settings = params["eval"]
    train_images = load_images(args.train, args.res)
    test_images = load_images(args.test, args.res)
    embedding = fit_embedding(train_images, settings["sample_quality"], params["seed"]).with_test_split(test_images)
    real = training_reference(train_images, settings["samples"], params["seed"])
    summary = {"model": TRAINING_IMAGES, "kind": "reference", "resolution": args.res, "n_test": len(test_images),
               "n_train": len(train_images), "parameters": None, "flops_per_image": None, "train_seconds": None,
               **sample_metrics(embedding, test_images, real, settings["sample_quality"]["k"])}
    embedding.save(args.out)
    atomic_write_json(Path(args.reference_dir) / "summary.json", summary)
    print(f"sample embedding at {args.res}px: {embedding.dims} components of {embedding.fit_images} training "
          f"images; {len(real)} training images against {len(test_images)} test images: precision "
          f"{summary['sample_precision']:.3f}, recall {summary['sample_recall']:.3f}, fd_embedding "
          f"{summary['fd_embedding']:.3f}")


def table_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae table", description=doc_summary("eval.table", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--eval-dir", required=True, nargs="+",
                        help="holds {res}/{model}/summary.json, e.g. results/eval; one per seed for several seeds")
    parser.add_argument("--per-image-dir", required=True, nargs="+", help="holds {res}_{model}.csv, e.g. "
                        "results/metrics/per_image; one per seed, in the order of --eval-dir")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="the training seed of each --eval-dir (default: params seeds)")
    parser.add_argument("--out-dir", required=True, help="where table1.csv and metrics.json go, e.g. results/metrics")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    from eval.gaussian_bound import with_gaussian_bound
    from eval.table import build_table1, claims_table, metrics_json, paths_of, per_seed_table, run_seeds

    table = with_gaussian_bound(build_table1(params, args.eval_dir, args.per_image_dir, args.seeds),
                                args.eval_dir[0], params["data"]["resolutions"])
    seeds = args.seeds or run_seeds(params, len(args.eval_dir))
    long = per_seed_table(params, paths_of(args.eval_dir), paths_of(args.per_image_dir), seeds)
    out_dir = Path(args.out_dir)
    atomic_write_csv(out_dir / "table1.csv", table)
    atomic_write_csv(out_dir / "table1_seeds.csv", long.drop(columns=["per_image"]))
    atomic_write_csv(out_dir / "claims.csv", claims_table(long))
    atomic_write_json(out_dir / "metrics.json", metrics_json(table))
    print(table[["resolution", "model", "rmse_mean", "rmse_std", "wilcoxon_p", "paper_rmse_mean"]]
          .to_string(index=False))


def neighbours_main(argv: list[str] | None = None) -> None:
    from eval.neighbours import TEST_REFERENCE, nearest_neighbours, neighbour_table, neighbours_figure, summary_table

    parser = argparse.ArgumentParser(prog="lapcvae neighbours",
                                     description=doc_summary("eval.neighbours", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--res", type=int, required=True, help="image resolution, e.g. 64")
    parser.add_argument("--samples", nargs="+", help="each model's samples.npy (what the rule declares)")
    parser.add_argument("--models", nargs="+", choices=MODELS, help="the models of --samples, in the same order")
    parser.add_argument("--eval-dir", help="instead of --samples: holds {res}/{model}/samples.npy, e.g. results/eval "
                                           "(models not evaluated are left out)")
    parser.add_argument("--train", required=True, help="e.g. data/prepared/64/train.npy")
    parser.add_argument("--test", required=True, help="e.g. data/prepared/64/test.npy")
    parser.add_argument("--out-dir", required=True, help="e.g. results/neighbours")
    parser.add_argument("--figure", required=True, help="the PNG of Figure 6 (its name: core/figures.py)")
    args = parser.parse_args(argv)
    settings = params_from_args(args)["eval"]["neighbours"]

    train = load_images(args.train, args.res)
    test = load_images(args.test, args.res)
    queries: dict[str, np.ndarray] = {}
    if args.samples:
        if len(args.samples) != len(args.models or []):
            parser.error("pass one --models name per --samples file, in the same order")
        for name, path in zip(args.models, args.samples, strict=True):
            queries[name] = np.asarray(load_images(path, args.res)[:settings["samples"]])  # missing file: error
    elif args.eval_dir:
        for name in MODELS:
            path = Path(args.eval_dir) / str(args.res) / name / "samples.npy"
            if path.is_file():
                queries[name] = np.asarray(load_images(path, args.res)[:settings["samples"]])
    else:
        parser.error("pass --samples and --models (or --eval-dir)")
    if not queries:
        raise FileNotFoundError(f"no {args.eval_dir}/{args.res}/<model>/samples.npy found: run `lapcvae evaluate` "
                                "for at least one model first")
    queries[TEST_REFERENCE] = np.asarray(test[:settings["samples"]])

    out_dir = Path(args.out_dir)
    results: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, images in queries.items():
        logger.info("nearest neighbours of %d %s images among %d training images", len(images), name, len(train))
        results[name] = nearest_neighbours(images, train, settings["k"], settings["chunk"])
        atomic_write_csv(out_dir / f"{args.res}_{name}.csv", neighbour_table(*results[name]))
    summary = summary_table({name: distances[:, 0] for name, (distances, _) in results.items()})
    atomic_write_csv(out_dir / f"{args.res}_summary.csv", summary)
    neighbours_figure(queries, results, train, settings["figure_rows"], args.res, args.figure)
    print(summary.to_string(index=False))


def figures_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae figures",
                                     description=doc_summary("eval.figures", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--res", type=int, required=True, help="resolution, e.g. 64")
    parser.add_argument("--eval-dir", type=Path, required=True, help="results/eval")
    parser.add_argument("--models-dir", type=Path, required=True, help="results/models")
    parser.add_argument("--test", type=Path, required=True, help="data/prepared/{res}/test.npy")
    parser.add_argument("--out-dir", type=Path, required=True, help="results/figures")
    parser.add_argument("--curves-dir", type=Path,
                        help="also write the training curves as one CSV per term here, e.g. results/curves/64")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS,
                        help="models to show (default: all of Table 1; the workflow passes those that run at --res)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    if args.res <= 0:
        raise ValueError(f"--res must be a positive resolution such as 64, got {args.res}")
    from eval.figures import write_figures

    written = write_figures(params, args.res, args.eval_dir, args.models_dir, args.test, args.out_dir,
                            args.models, args.curves_dir)
    for path in written:
        print(path)


def report_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae report",
                                     description=doc_summary("eval.report", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--results", type=Path, required=True, help="results folder, e.g. results")
    parser.add_argument("--prepared", type=Path, required=True, help="prepared data, e.g. data/prepared")
    parser.add_argument("--out-md", type=Path, required=True, help="e.g. results/report.md")
    parser.add_argument("--out-html", type=Path, required=True, help="e.g. results/report.html")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    from eval.report import build_report
    from eval.report_render import render_html, render_markdown

    blocks = build_report(params, args.results, args.prepared)
    markdown, page = render_markdown(blocks, args.out_md.parent), render_html(blocks)  # both before any write
    write_text_atomically(args.out_md, markdown)
    write_text_atomically(args.out_html, page)
    print(args.out_md)
    print(args.out_html)
