"""Poisson compositing speed: one full-image RGB blend at 64 and 128 px (median of several runs), measured side
by side with blending through an already factorised solver, the path `eval.editing.composite` takes for the
second and later variants. Target: under a second per 128 px blend.

    .venv/bin/python benchmarks/poisson.py [--repeats 7]

"Full" masks cover every pixel but the one-pixel frame, the largest system with a Dirichlet boundary
((H - 2) * (W - 2) unknowns); a mask of the whole image has no boundary and is solved in closed form.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from core.params import load_params
from eval.poisson import PoissonSolver, poisson_blend

TARGET_SECONDS = 1.0


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def full_mask(size: int) -> np.ndarray:
    mask = np.ones((size, size), dtype=bool)
    mask[0], mask[-1], mask[:, 0], mask[:, -1] = False, False, False, False
    return mask


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per measurement; the median is reported")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(load_params()["seed"])
    print(f"{'size':>5} {'unknowns':>9} {'blend (s)':>10} {'reused solver (s)':>18} {'blend / reused':>15} "
          f"{'under ' + str(TARGET_SECONDS) + ' s':>12}")
    for size in (64, 128):
        source, target = rng.uniform(size=(size, size, 3)), rng.uniform(size=(size, size, 3))
        mask = full_mask(size)
        solver = PoissonSolver(mask)
        blend = median_seconds(lambda mask=mask, s=source, t=target: poisson_blend(s, t, mask), args.repeats)
        reused = median_seconds(lambda solver=solver, s=source, t=target: solver.blend(s, t), args.repeats)
        print(f"{size:>5} {int(mask.sum()):>9} {blend:>10.4f} {reused:>18.4f} {blend / reused:>15.2f} "
              f"{str(blend < TARGET_SECONDS):>12}")


if __name__ == "__main__":
    main()
