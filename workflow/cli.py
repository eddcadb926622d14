"""`lapcvae <command> [options]`: every step of the DAG as a plain command-line entry point.

Each command is the `main(argv)` of the module that owns the step; `lapcvae <command> --help` lists its options.
"""

from __future__ import annotations

import importlib
import logging
import sys

COMMANDS = {
    # data/
    "generate-faces": ("data.synthetic:main", "write the procedural synthetic faces as a CelebA-format tree"),
    "fetch-celeba": ("data.celeba:main", "check and unpack img_align_celeba.zip (local path, URL or download)"),
    "prepare": ("data.prepare:main", "crop, resize and split into data/prepared/{res}/{train,test}.npy"),
    # models/ and baselines/
    "train-level": ("models.train_lapcvae:train_level_main", "train one LapCVAE pyramid level"),
    "retrain-m": ("models.train_lapcvae:retrain_m_main", "retrain only the M networks of a trained LapCVAE"),
    "train-baseline": ("baselines.train:main", "train the VAE or VAE/GAN baseline"),
    "reconstruct": ("models.cli:reconstruct_main", "reconstruct images with any checkpoint"),
    "sample": ("models.cli:sample_main", "sample images from any checkpoint"),
    "partial-sample": ("models.cli:partial_sample_main", "keep an image's coarse LapCVAE levels, sample the rest"),
    # eval/
    "evaluate": ("eval.metrics:main", "per-image metrics, reconstructions and samples of one model"),
    "references": ("eval.references:main", "Table 1's reference rows: mean face, PCA, LapCVAE's coarsest level"),
    "training-cost": ("eval.cost:main", "training time, images seen and training FLOPs of one trained model"),
    "tune": ("eval.tuning:main", "tune every model's regularisation weights on the validation split"),
    "rate-distortion": ("eval.rate_distortion:main", "retrain over a KL-weight grid: test RMSE against rate"),
    "table": ("eval.table:main", "gather Table 1 and metrics.json from the per-model metrics"),
    "neighbours": ("eval.neighbours:main", "nearest training images of a model's samples (Figure 6)"),
    "figures": ("eval.figures:main", "Figures 4, 5, 7, 8 and training curves"),
    "edit-coarse": ("eval.editing:edit_coarse_main", "Figure 1: paint the coarse level, sample, composite"),
    "edit-region": ("eval.editing:edit_region_main", "Figure 9: resample a region, composite"),
    "export-study": ("eval.human_study:export_main", "export the human-study pairs and study.html"),
    "analyze-study": ("eval.human_study:analyze_main", "turn study responses into Table 2"),
    "report": ("eval.report:main", "write results/report.md and the self-contained report.html"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "usage: lapcvae <command> [options]\n\ncommands:\n" + "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        sys.exit(f"lapcvae: unknown command {command!r}\n\n{_usage()}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    module_name, function_name = COMMANDS[command][0].split(":")
    entry_point = getattr(importlib.import_module(module_name), function_name)
    try:
        entry_point(rest)
    except (ValueError, FileNotFoundError) as error:
        # Our modules raise these with a message that names the cause and the fix; no traceback needed.
        logging.getLogger("lapcvae").debug("traceback", exc_info=True)
        sys.exit(f"lapcvae {command}: error: {error}")


if __name__ == "__main__":
    main()
