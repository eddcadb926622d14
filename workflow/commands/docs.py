"""`lapcvae results-doc`: a run's Table 1 and claims as Markdown between markers (library: eval/results_doc.py).

`results_doc_main(argv)` parses its options and calls library functions with plain arguments.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from eval.report_provenance import hardware
from eval.results_doc import results_block, summary_block, write_results_doc
from workflow.commands import add_params_arguments, doc_summary, params_from_args

logger = logging.getLogger(__name__)


def results_doc_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae results-doc",
                                     description=doc_summary("eval.results_doc", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--metrics", type=Path, default=Path("results/metrics"),
                        help="folder of the run's table1.csv, claims.csv and table1_seeds.csv (default: %(default)s)")
    parser.add_argument("--eval-dir", type=Path, default=None,
                        help="folder of {res}/{model}/summary.json, for the hardware each model trained on "
                             "(default: the eval folder beside --metrics)")
    parser.add_argument("--out", type=Path, default=Path("docs/results.md"),
                        help="Markdown file whose results block is replaced (created when absent; "
                             "default: %(default)s)")
    parser.add_argument("--summary-out", type=Path, default=None,
                        help="also replace the results block of this file (e.g. README.md) with a short Table 1 "
                             "and the claims' verdicts, linking to --out")
    parser.add_argument("--label", default=None,
                        help="what run this is, e.g. 'smoke configuration (config/smoke.yaml)' "
                             "(default: the params files)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    params_files = list(args.params or [])
    label = args.label or ("the default configuration" if not params_files else " + ".join(params_files))
    eval_dir = args.eval_dir if args.eval_dir is not None else args.metrics.parent / "eval"
    cpu = hardware()[0].removeprefix("CPU: ")
    block = results_block(args.metrics, eval_dir, params, params_files, label, cpu)
    write_results_doc(args.out, block, "Results")
    if args.summary_out is not None:
        link = os.path.relpath(args.out, args.summary_out.parent)
        write_results_doc(args.summary_out, summary_block(args.metrics, label, cpu, link), "Results")
    logger.info("wrote the results of %s from %s to %s", label, args.metrics, args.out)
