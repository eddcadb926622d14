"""Images per second of `prepare` against the usual per-image torchvision pipeline, side by side, one process.

    .venv/bin/python benchmarks/prepare.py [--count 400] [--repeats 3]

Both read the same CelebA-sized (178x218) JPEGs (synthetic faces generated into a temporary folder) and produce
uint8 images at every resolution of params.yaml (64 and 128):
- baseline: for each resolution, PIL load, CenterCrop(148), Resize(res), PILToTensor (how a torchvision
  Dataset with one transform per resolution prepares CelebA);
- ours, per image: data.prepare.load_image (decode once, crop, resize to every resolution);
- ours, end to end: data.prepare.prepare(workers=1), which also writes the arrays, attributes.csv and the
  SHA-256 manifest.
Each is timed best-of-`repeats` to damp noise from other processes; the ratio is ours / baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from torchvision import transforms

from data.celeba_format import IMAGE_DIR
from data.prepare import Crop, load_image, prepare
from data.synthetic import generate
from workflow.config import load_params


def best_rate(task: Callable[[], None], count: int, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=400, help="number of JPEGs")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each pipeline; the best counts")
    args = parser.parse_args()
    params = load_params()
    data = params["data"]
    crop, resolutions = Crop(**data["crop"]), data["resolutions"]

    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as scratch:
        raw = generate(Path(scratch) / "raw", count=args.count, seed=0, jpeg_quality=data["synthetic"]["jpeg_quality"])
        paths = sorted((raw / IMAGE_DIR).glob("*.jpg"))
        pipelines = [transforms.Compose([transforms.CenterCrop(crop.size), transforms.Resize(size),
                                         transforms.PILToTensor()]) for size in resolutions]

        def baseline() -> None:
            for pipeline in pipelines:  # one Dataset pass per resolution, each decoding every file again
                for path in paths:
                    with Image.open(path) as image:
                        pipeline(image.convert("RGB"))

        def ours_per_image() -> None:
            for path in paths:
                load_image(path, crop, resolutions)

        def ours_end_to_end() -> None:
            prepare(raw, Path(scratch) / "prepared", crop=crop, resolutions=resolutions,
                    test_fraction=data["test_fraction"], seed=params["seed"], source="synthetic", workers=1)

        baseline_rate = best_rate(baseline, len(paths), args.repeats)
        per_image_rate = best_rate(ours_per_image, len(paths), args.repeats)
        end_to_end_rate = best_rate(ours_end_to_end, len(paths), args.repeats)

    print(f"{len(paths)} JPEGs 178x218 -> {' + '.join(map(str, resolutions))} px, one process, best of {args.repeats}")
    print(f"torchvision per-image pipeline : {baseline_rate:8.0f} images/s")
    print(f"prepare, per image (load_image): {per_image_rate:8.0f} images/s  ratio {per_image_rate / baseline_rate:.2f}x")
    print(f"prepare, end to end (workers=1): {end_to_end_rate:8.0f} images/s  ratio {end_to_end_rate / baseline_rate:.2f}x")


if __name__ == "__main__":
    main()
