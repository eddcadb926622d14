"""`lapcvae ablations train|table`: greedy against joint training and the decoder's conditioning (studies/ablations.py).

    lapcvae ablations train --res 64 --variant joint_latents --train data/prepared/64/train.npy \\
        --val data/prepared/64/val.npy --out-dir results/ablations/64/joint_latents
    lapcvae ablations table --res 64 --work-dir results/ablations/64 --val data/prepared/64/val.npy \\
        --test data/prepared/64/test.npy --out-csv results/ablations/64.csv --out-json results/ablations/64.json
"""

from __future__ import annotations

import argparse
import logging

from data.arrays import load_image_array
from studies.ablations import ablation_table, parse_variant, read_records, train_variant, write_tables
from workflow.commands import add_params_arguments, add_split_arguments, doc_summary, params_from_args

logger = logging.getLogger(__name__)


def ablations_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae ablations", description=doc_summary("studies.ablations"))
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train one variant (and retrain its M networks)")
    add_params_arguments(train)
    add_split_arguments(train, "train", "val")
    train.add_argument("--variant", required=True, help="<greedy|joint>_<latents|image|both>, e.g. joint_latents")
    train.add_argument("--out-dir", required=True, help="e.g. results/ablations/64/joint_latents")
    table = commands.add_parser("table", help="evaluate the trained variants and write the ablation tables")
    add_params_arguments(table)
    add_split_arguments(table, "val", "test")
    table.add_argument("--work-dir", required=True, help="the variants' folders, e.g. results/ablations/64")
    table.add_argument("--out-csv", required=True, help="e.g. results/ablations/64.csv")
    table.add_argument("--out-json", required=True, help="e.g. results/ablations/64.json")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    if str(args.res) not in params["lapcvae"]:
        raise ValueError(f"--res {args.res}: params has no lapcvae.{args.res} section")
    if args.command == "train":
        parse_variant(args.variant)  # a bad name is refused before the data is read
        train_variant(params, args.res, args.variant, load_image_array(args.train, args.res),
                      load_image_array(args.val, args.res), args.out_dir)
        return
    records = read_records(args.work_dir, params["ablations"]["variants"])
    variants, comparison = ablation_table(records, args.work_dir, load_image_array(args.val, args.res),
                                          load_image_array(args.test, args.res), params["device"])
    write_tables(variants, comparison, records, args.out_csv, args.out_json)
    logger.info("ablations at %d px:\n%s\n%s", args.res, variants.to_string(), comparison.to_string())
