"""Peak memory of a training job against the size of its data set: the shared loop trains one epoch of a small
conv autoencoder on a memory-mapped split of N random 64 px images, in a fresh process per N, and reports that
process's peak resident memory (VmHWM). The loop reads a batch at a time (data.arrays.read_rows), so the peak
should not grow with N; the ratio of the largest N's peak to the smallest's is printed.

    .venv/bin/python benchmarks/train_memory.py [--counts 3000 30000] [--resolution 64]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
# One process: memory-map the split, train one epoch with large batches (few steps), print VmHWM in MiB.
PROBE = """
import sys
import torch
from torch import nn
from data.arrays import load_image_array
from models.interface import StepResult
from training.loop import fit

class Autoencoder(nn.Module):
    kind, config = "memory-probe", {}

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(8, 3, 4, 2, 1))
    def parameter_groups(self):
        return {"net": list(self.parameters())}
    def training_step(self, images):
        loss = (self.net(images).float() - images).square().mean()
        return StepResult(objectives={"net": loss}, logs={"loss": loss.detach()})

images = load_image_array(sys.argv[1], int(sys.argv[2]))
settings = {"lr": 1e-3, "batch_size": 500, "epochs": 1, "log_every": 1000, "bf16": False, "grad_clip": None,
            "optimizer": "adam"}
fit(Autoencoder(), images, settings=settings, seed=0, output=sys.argv[3], device="cpu", name="memory")
status = open("/proc/self/status").read().splitlines()
print(next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024)
"""


def write_split(path: Path, count: int, resolution: int) -> None:
    """N random uint8 images (N, 3, res, res) as a .npy, written in chunks (the benchmark's own memory stays small)."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=(count, 3, resolution, resolution))
    rng = np.random.default_rng(0)
    for start in range(0, count, 1000):
        stop = min(count, start + 1000)
        array[start:stop] = rng.integers(0, 256, (stop - start, 3, resolution, resolution), dtype=np.uint8)
    array.flush()
    del array


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[3000, 30000])
    parser.add_argument("--resolution", type=int, default=64)
    args = parser.parse_args()
    peaks = {}
    with tempfile.TemporaryDirectory() as folder:
        for count in args.counts:
            split = Path(folder) / f"train_{count}.npy"
            write_split(split, count, args.resolution)
            result = subprocess.run([sys.executable, "-c", PROBE, str(split), str(args.resolution),
                                     str(Path(folder) / f"model_{count}.pt")], cwd=REPO, capture_output=True,
                                    text=True, env={"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(REPO)})
            if result.returncode != 0:
                sys.exit(f"the probe at {count} images failed:\n{result.stderr[-2000:]}")
            peaks[count] = float(result.stdout.split()[-1])
            size = split.stat().st_size / 2 ** 20
            print(f"{count:>7} images ({size:,.0f} MiB on disk): peak resident memory {peaks[count]:,.0f} MiB")
            split.unlink()
    smallest, largest = min(peaks), max(peaks)
    print(f"peak at {largest} images / peak at {smallest}: {peaks[largest] / peaks[smallest]:.3f}")


if __name__ == "__main__":
    main()
