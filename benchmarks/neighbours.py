"""Exact nearest-neighbour search (eval.neighbours) against a naive per-sample loop and this machine's matmul rate.

    .venv/bin/python benchmarks/neighbours.py [--queries 64] [--train 4096] [--size 32] [--chunk 1024]

Everything is measured side by side in one run on random uint8 images; prints throughputs and ratios.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch

from eval.neighbours import nearest_neighbours


def best_seconds(function: Callable[[], object], repeats: int) -> float:
    """Fastest of `repeats` timed calls (the least disturbed by other jobs on a shared machine)."""
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        timings.append(time.perf_counter() - started)
    return min(timings)


def naive_search(queries: np.ndarray, train: np.ndarray, k: int) -> np.ndarray:
    """One query at a time: float64 squared differences to every training image, then a stable sort."""
    flat_train = train.reshape(len(train), -1).astype(np.float64)  # (N, D)
    indices = []
    for query in queries.reshape(len(queries), -1).astype(np.float64):
        distances = ((flat_train - query) ** 2).sum(axis=1)  # (N,)
        indices.append(np.argsort(distances, kind="stable")[:k])
    return np.stack(indices)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--train", type=int, default=4096)
    parser.add_argument("--size", type=int, default=32, help="image side in pixels")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    queries = rng.integers(0, 256, (args.queries, 3, args.size, args.size), dtype=np.uint8)
    train = rng.integers(0, 256, (args.train, 3, args.size, args.size), dtype=np.uint8)
    pixels = 3 * args.size * args.size
    pairs = args.queries * args.train

    _, indices = nearest_neighbours(queries, train, args.k, args.chunk)
    if not np.array_equal(indices, naive_search(queries, train, args.k)):
        raise SystemExit("the chunked search disagrees with the naive loop")

    chunked = best_seconds(lambda: nearest_neighbours(queries, train, args.k, args.chunk), args.repeats)
    naive = best_seconds(lambda: naive_search(queries, train, args.k), args.repeats)
    # The machine's float64 matmul rate, on the search's own shapes and on a square product.
    query_matrix = torch.rand(args.queries, pixels, dtype=torch.float64)
    chunk_matrix = torch.rand(pixels, min(args.chunk, args.train), dtype=torch.float64)
    same_shape = best_seconds(lambda: query_matrix @ chunk_matrix, args.repeats)
    square = torch.rand(1024, 1024, dtype=torch.float64)
    square_seconds = best_seconds(lambda: square @ square, args.repeats)

    search_flops = 2.0 * pairs * pixels  # the -2ab matmul dominates
    matmul_rate = 2.0 * args.queries * pixels * chunk_matrix.shape[1] / same_shape
    square_rate = 2.0 * 1024**3 / square_seconds
    print(f"{args.queries} queries x {args.train} training images of 3x{args.size}x{args.size}, k={args.k}, "
          f"chunk={args.chunk}, torch threads={torch.get_num_threads()}")
    print(f"chunked exact search : {chunked * 1e3:9.1f} ms  {pairs / chunked:12.3e} pairs/s  "
          f"{search_flops / chunked / 1e9:7.2f} GFLOP/s")
    print(f"naive per-query loop : {naive * 1e3:9.1f} ms  {pairs / naive:12.3e} pairs/s")
    print(f"float64 matmul, same shapes : {matmul_rate / 1e9:7.2f} GFLOP/s; 1024^2 square: {square_rate / 1e9:7.2f} "
          "GFLOP/s")
    print(f"speed-up over the naive loop     : {naive / chunked:6.1f}x")
    print(f"search rate / same-shape matmul  : {search_flops / chunked / matmul_rate:6.2f}")
    print(f"search rate / square matmul      : {search_flops / chunked / square_rate:6.2f}")


if __name__ == "__main__":
    main()
