"""Images per second of `prepare` against the usual per-image torchvision pipeline, side by side.

    .venv/bin/python benchmarks/prepare.py [--count 400] [--repeats 3]

Both read the same CelebA-sized (178x218) JPEGs (synthetic faces generated into a temporary folder) and produce
uint8 images at every resolution of params.yaml (64 and 128):
- baseline: for each resolution, PIL load, CenterCrop(148), Resize(res), PILToTensor (how a torchvision
  Dataset with one transform per resolution prepares CelebA);
- ours, in memory: data.prepare.load_batch on chunks of CHUNK files (decode each once, crop, resize the
  chunk to every resolution);
- ours, end to end: data.prepare.prepare(workers=1), which also writes the arrays, attributes.csv and the
  SHA-256 manifest; and the same with the worker processes the DAG gives it (resources.data.threads).
Each is timed best-of-`repeats` to damp noise from other processes, in wall-clock images per second and in
CPU milliseconds per image (all threads; steadier on a shared machine); ratios are ours over baseline.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from torchvision import transforms

from core.params import load_params
from data.celeba_format import IMAGE_DIR
from data.prepare import CHUNK, Crop, load_batch, prepare
from data.synthetic import generate


def best_rate(task: Callable[[], None], count: int, repeats: int) -> tuple[float, float]:
    """(images per wall-clock second, CPU milliseconds per image), each the best of `repeats` runs."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        task()
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return count / best_wall, 1000 * best_cpu / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="number of JPEGs")
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

        def ours_in_memory() -> None:
            for start in range(0, len(paths), CHUNK):
                load_batch(paths[start : start + CHUNK], crop, resolutions)

        def ours_end_to_end(workers: int) -> Callable[[], None]:
            return lambda: prepare(raw, Path(scratch) / "prepared", crop=crop, resolutions=resolutions,
                                   test_fraction=data["test_fraction"], seed=params["seed"], source="synthetic",
                                   workers=workers)

        baseline_rate = best_rate(baseline, len(paths), args.repeats)
        in_memory_rate = best_rate(ours_in_memory, len(paths), args.repeats)
        end_to_end_rate = best_rate(ours_end_to_end(1), len(paths), args.repeats)
        # As the DAG runs it here: Snakemake gives the rule resources.data.threads worker processes.
        parallel_workers = params["resources"]["data"]["threads"]
        parallel_rate = best_rate(ours_end_to_end(parallel_workers), len(paths), args.repeats)

    sizes = " + ".join(map(str, resolutions))
    print(f"{len(paths)} JPEGs 178x218 -> {sizes} px, one process, best of {args.repeats}")
    rows = (("torchvision per-image pipeline ", baseline_rate), ("prepare, in memory (load_batch)", in_memory_rate),
            ("prepare, end to end (workers=1)", end_to_end_rate))
    for name, (rate, cpu_ms) in rows:
        print(f"{name}: {rate:6.0f} images/s ({rate / baseline_rate[0]:.2f}x), "
              f"{cpu_ms:.3f} CPU ms/image ({baseline_rate[1] / cpu_ms:.2f}x)")
    # The workers' CPU time is spent in child processes, which process_time does not see: wall clock only.
    print(f"prepare, end to end (workers={parallel_workers}): {parallel_rate[0]:6.0f} images/s "
          f"({parallel_rate[0] / baseline_rate[0]:.2f}x, wall clock, as the DAG runs it on this machine)")


if __name__ == "__main__":
    main()
