"""`lapcvae export-study`, `analyze-study`: the human study's command lines (library: eval/study_*.py).

Each `*_main(argv)` parses its options and calls library functions with plain arguments.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from core.params import study_resolution
from eval.study_analysis import analyze, read_key, read_responses, table_rows, write_table
from eval.study_export import export_study, load_study_inputs, plan_study
from workflow.commands import add_params_arguments, doc_summary, params_from_args

logger = logging.getLogger(__name__)


def export_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae export-study",
                                     description=doc_summary("eval.human_study", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--eval-dir", type=Path, help="folder of {res}/{model}/reconstructions.npy "
                        "(default: <paths.results>/eval)")
    parser.add_argument("--prepared", type=Path, help="folder of {res}/test.npy (default: paths.prepared)")
    parser.add_argument("--resolution", type=int, help="resolution to compare at (default: human_study.resolution, "
                        "or the largest of data.resolutions when the run does not compute it)")
    parser.add_argument("--out", type=Path, help="study folder to write "
                        "(default: <paths.results>/human_study)")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    study = params["human_study"]
    results = Path(params["paths"]["results"])
    originals, reconstructions = load_study_inputs(
        args.eval_dir or results / "eval", args.prepared or Path(params["paths"]["prepared"]),
        args.resolution or study_resolution(params), study["models"],
    )
    plan = plan_study(len(originals), study["models"], study["pairs"], params["seed"])
    export_study(args.out or results / "human_study", plan, originals, reconstructions, study["display_size"])


def analyze_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae analyze-study",
                                     description="turn study responses into Table 2")
    add_params_arguments(parser)
    parser.add_argument("--key", type=Path,
                        help="key.csv of the export (default: <paths.results>/human_study/key.csv)")
    parser.add_argument("--responses", type=Path, nargs="+", required=True, metavar="CSV",
                        help="response files downloaded from study.html, one or more per participant")
    parser.add_argument("--out", type=Path, help="table2.csv to write; table2.json goes beside it "
                        "(default: <paths.results>/human_study/table2.csv)")
    args = parser.parse_args(argv)
    study_dir = Path(params_from_args(args)["paths"]["results"]) / "human_study"  # also checks --out
    args.key, args.out = args.key or study_dir / "key.csv", args.out or study_dir / "table2.csv"
    key = read_key(args.key)
    summary = analyze(key, read_responses(args.responses, key))
    out = args.out
    write_table(out, summary)
    for row in table_rows(summary):
        mean, std, p_value = row["preference_mean"], row["preference_std"], row["binomial_p"]
        text = "n/a" if mean is None else f"{mean:.2f}" + ("" if std is None else f" ± {std:.2f}")
        print(f"{row['experiment']:<17} {row['display_name']:<24} {text:>16} %  binomial p = "
              + ("n/a" if p_value is None else f"{p_value:.3g}"))
    logger.info("wrote %s and %s", out, out.with_suffix(".json"))
