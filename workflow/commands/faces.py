"""`lapcvae face-check`: whether a model's samples are faces (eval/face_check.py), into
results/eval/{res}/face_check/{model}.json; `lapcvae face-check-references`: the same for the reference rows' sets.

`face-check` is light on purpose (numpy and OpenCV, no torch): one job per model and seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.atomic import write_json
from core.registry import MEAN_FACE, TRAINING_IMAGES
from data.arrays import load_image_array
from eval.face_check import face_rate_of_test_split, face_summary
from workflow.commands import add_params_arguments, doc_summary, params_from_args

FITTED_SAMPLES = "samples_fitted.npy"  # beside samples.npy when the model has a fitted prior (eval/evaluation.py)


def face_check_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lapcvae face-check", description=doc_summary("eval.face_check",
                                                                                        paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--res", type=int, required=True, help="image resolution, e.g. 64")
    parser.add_argument("--test", required=True, help="the test split, e.g. data/prepared/64/test.npy")
    parser.add_argument("--samples", required=True,
                        help=f"a model's prior samples, e.g. results/eval/64/vae/samples.npy; its fitted prior's "
                             f"{FITTED_SAMPLES} beside it is checked too when there")
    parser.add_argument("--out", required=True, help="e.g. results/eval/64/face_check/vae.json")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    made_by = "`lapcvae evaluate` (snakemake rule evaluate)"
    sample_sets = {"": load_image_array(args.samples, args.res, made_by=made_by)}
    fitted = Path(args.samples).with_name(FITTED_SAMPLES)
    if fitted.is_file():
        sample_sets["fitted_"] = load_image_array(fitted, args.res, made_by=made_by)
    settings = params["eval"]["face_check"]
    test_rate = face_rate_of_test_split(load_image_array(args.test, args.res), settings)
    summary = face_summary(sample_sets, test_rate, settings)
    write_json(args.out, {"resolution": args.res, "samples": args.samples, **summary})
    print(f"{args.samples}: faces in {summary['face_rate']:.3f} of the N(0, I) prior's samples ("
          f"{summary['face_ratio']:.2f}x the test split's {summary['test_face_rate']:.3f})"
          + (f", in {summary['fitted_face_rate']:.3f} of the fitted prior's ({summary['fitted_face_ratio']:.2f}x)"
             if "fitted_face_rate" in summary else ""))


def face_check_references_main(argv: list[str] | None = None) -> None:
    """The reference rows' sample sets, checked as a model's are: eval.samples real training images (the real-image
    row) and the mean training face repeated as often (a set with no variety, a face to the detector)."""
    from eval.metrics import to_uint8
    from eval.references import mean_face
    from eval.sample_quality import repeated, training_reference

    parser = argparse.ArgumentParser(prog="lapcvae face-check-references", description=doc_summary(
        "eval.face_check", paragraph=True))
    add_params_arguments(parser)
    parser.add_argument("--res", type=int, required=True, help="image resolution, e.g. 64")
    parser.add_argument("--train", required=True, help="the training split, e.g. data/prepared/64/train.npy")
    parser.add_argument("--test", required=True, help="the test split, e.g. data/prepared/64/test.npy")
    parser.add_argument("--out-dir", required=True, help="writes <reference>.json here, e.g. "
                                                         "results/eval/64/face_check")
    args = parser.parse_args(argv)
    params = params_from_args(args)
    settings = params["eval"]
    train_images = load_image_array(args.train, args.res)
    # the denominator once for both sets
    test_rate = face_rate_of_test_split(load_image_array(args.test, args.res), settings["face_check"])
    sample_sets = {TRAINING_IMAGES: training_reference(train_images, settings["samples"], params["seed"]),
                   MEAN_FACE: repeated(to_uint8(mean_face(train_images)[None])[0], settings["samples"])}
    for name, images in sample_sets.items():
        summary = face_summary({"": images}, test_rate, settings["face_check"])
        write_json(Path(args.out_dir) / f"{name}.json", {"resolution": args.res, "samples": name, **summary})
        print(f"{name} at {args.res}px: faces in {summary['face_rate']:.3f} ({summary['face_ratio']:.2f}x the test "
              f"split's {summary['test_face_rate']:.3f})")
