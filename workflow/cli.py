"""`lapcvae <command> [options]`: every step of the DAG as a plain command-line entry point.

Each command is a `*_main(argv)` of workflow/commands/ (which calls the library: data/, models/, eval/...);
`lapcvae <command> --help` lists its options.
"""

from __future__ import annotations

import errno
import importlib
import logging
import sys

from core.memory import keep_freed_memory
from workflow.locks import release_command_locks

COMMANDS = {
    # workflow/commands/data.py
    "generate-faces": ("data:generate_faces_main", "write the procedural synthetic faces as a CelebA-format tree"),
    "fetch-celeba": ("data:fetch_celeba_main", "check and unpack img_align_celeba.zip (local path, URL or download)"),
    "raw-data": ("data:raw_data_main", "write any registered data set's CelebA-format tree (core/datasets.py)"),
    "prepare": ("data:prepare_main", "crop, resize and split into data/prepared/{res}/{train,test}.npy"),
    # workflow/commands/train.py, sample.py and prior.py
    "train-level": ("train:train_level_main", "train one LapCVAE pyramid level"),
    "retrain-m": ("train:retrain_m_main", "retrain only the M networks of a trained LapCVAE"),
    "train-baseline": ("train:train_baseline_main", "train the VAE or VAE/GAN baseline"),
    "reconstruct": ("sample:reconstruct_main", "reconstruct images with any checkpoint"),
    "sample": ("sample:sample_main", "sample images from any checkpoint"),
    "partial-sample": ("sample:partial_sample_main", "keep an image's coarse LapCVAE levels, sample the rest"),
    "fit-prior": ("prior:fit_prior_main", "fit a Gaussian prior to a model's training-split posterior means"),
    # workflow/commands/evaluate.py, faces.py, protocol.py, editing.py, study.py
    "evaluate": ("evaluate:evaluate_main", "per-image metrics, reconstructions and samples of one model"),
    "sample-embedding": ("evaluate:sample_embedding_main", "fit the sample-quality embedding on the training split "
                         "and score training images as the real-image reference"),
    "face-check": ("faces:face_check_main", "whether a model's prior samples are faces (OpenCV's face detector)"),
    "face-check-references": ("faces:face_check_references_main", "the face check of real training images and the "
                              "mean face, Table 1's reference rows"),
    "references": ("protocol:references_main", "Table 1's reference rows: mean face, PCA, LapCVAE's coarsest level"),
    "training-cost": ("protocol:training_cost_main", "training time, images seen and training FLOPs of one model"),
    "tune": ("protocol:tune_main", "tune every model's regularisation weights on the validation split"),
    "rate-distortion": ("protocol:rate_distortion_main", "retrain over a KL-weight grid: test RMSE against rate"),
    "budget-curve": ("protocol:budget_curve_main", "retrain one model at multiples of the budget: RMSE against FLOPs"),
    "budget-curve-plot": ("protocol:budget_curve_plot_main", "gather the budget curves of one resolution and plot"),
    "ablations": ("ablations:ablations_main", "greedy vs joint training, decoder conditioning (train|table)"),
    "table": ("evaluate:table_main", "gather Table 1 and metrics.json from the per-model metrics"),
    "neighbours": ("evaluate:neighbours_main", "nearest training images of a model's samples (Figure 6)"),
    "figures": ("evaluate:figures_main", "Figures 4, 5, 7, 8 and training curves"),
    "edit-coarse": ("editing:edit_coarse_main", "Figure 1: paint the coarse level, sample, composite"),
    "edit-region": ("editing:edit_region_main", "Figure 9: resample a region, composite"),
    "export-study": ("study:export_main", "export the human-study pairs and study.html"),
    "analyze-study": ("study:analyze_main", "turn study responses into Table 2"),
    "report": ("evaluate:report_main", "write results/report.md and the self-contained report.html"),
    # workflow/commands/docs.py
    "results-doc": ("docs:results_doc_main", "write a run's Table 1 and claims into a Markdown file's results block"),
}


# The fix for each system error a command may meet while writing its outputs.
OS_ERROR_FIXES = {
    errno.ENOSPC: "the disk is full: free some space there (or point paths.* / --out at another disk) and rerun",
    errno.EDQUOT: "the disk quota is used up: free some space (or point paths.* / --out elsewhere) and rerun",
    errno.EFBIG: "the file is larger than this system allows (ulimit -f): raise the limit or write elsewhere",
    errno.EACCES: "the folder is not writable: fix its permissions (or point paths.* / --out elsewhere) and rerun",
    errno.EPERM: "the folder is not writable: fix its permissions (or point paths.* / --out elsewhere) and rerun",
    errno.EROFS: "that file system is read-only: point paths.* / --out at a writable folder and rerun",
    errno.ENOTDIR: "part of that path is a file, not a folder: pass a path under a folder (or move the file)",
    errno.EEXIST: "a file is in the way where a folder must be created: pass another path (or move the file)",
    errno.EISDIR: "that path is a folder, not a file: pass a file path",
}


def describe_error(error: BaseException) -> str:
    """One line naming the file and the fix for an expected failure."""
    if not isinstance(error, OSError) or error.errno is None:
        return str(error)  # our own messages already name file and fix
    where = f"{error.filename}: " if error.filename is not None else ""
    fix = OS_ERROR_FIXES.get(error.errno, "")
    return f"{where}{error.strerror or error}" + (f"; {fix}" if fix and error.filename is not None else "")


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
    keep_freed_memory()  # before the command allocates: its large tensors then reuse pages (core/memory.py)
    module_name, function_name = COMMANDS[command][0].split(":")
    module_name = f"workflow.commands.{module_name}"
    entry_point = getattr(importlib.import_module(module_name), function_name)
    try:
        try:
            entry_point(rest)
        finally:
            release_command_locks()  # the run lock a command took for its outputs' project (workflow/locks.py)
    except (ValueError, OSError) as error:
        # Expected failures: our modules raise ValueError / FileNotFoundError with a message that names the cause
        # and the fix; the system's OSErrors (full disk, read-only folder, a file where a folder should be) name
        # the file and get the fix here. One line, no traceback (it stays in the debug log).
        logging.getLogger("lapcvae").debug("traceback", exc_info=True)
        sys.exit(f"lapcvae {command}: error: {describe_error(error)}")


if __name__ == "__main__":
    main()
