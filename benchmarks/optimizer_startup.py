"""CPU seconds a fresh process spends building its optimizer and taking the first step: the training loop's Adam
(models/optimizers.py) against torch.optim.Adam, both fused, one process each, interleaved, medians of one run.

Every training job of the DAG is a new process, so this is paid once per job: torch.optim imports torch._dynamo
when an optimizer is built. `import torch` is measured beside it for scale.

    .venv/bin/python benchmarks/optimizer_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# One process: import torch (timed), build a small conv model, then time the optimizer's construction and first step.
PROBE = """
import sys, time
started = time.process_time()
import torch
from torch import nn
imported = time.process_time()
{import_optimizer}
model = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 16))
model(torch.rand(4, 3, 32, 32)).square().sum().backward()
before = time.process_time()
optimizer = Optimizer(model.parameters(), lr=1e-3, fused=True)
optimizer.step()
print(imported - started, time.process_time() - before, "torch._dynamo" in sys.modules)
"""
KINDS = {
    "the loop's Adam (models/optimizers.py)": "from models.optimizers import Adam as Optimizer",
    "torch.optim.Adam": "from torch.optim import Adam as Optimizer",
}


def probe(import_optimizer: str) -> tuple[float, float, bool]:
    output = subprocess.run([sys.executable, "-c", PROBE.format(import_optimizer=import_optimizer)], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return float(output[0]), float(output[1]), output[2] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, bool]]] = {kind: [] for kind in KINDS}
    for _ in range(args.repeats):  # interleaved, so that a change in the machine's load hits both alike
        for kind, import_optimizer in KINDS.items():
            results[kind].append(probe(import_optimizer))
    medians = {kind: statistics.median(step for _, step, _ in runs) for kind, runs in results.items()}
    import_torch = statistics.median(imported for runs in results.values() for imported, _, _ in runs)
    print(f"import torch: {import_torch:.2f} s of CPU (median of {2 * args.repeats} processes)")
    for kind, runs in results.items():
        print(f"{kind}: building it and its first step {medians[kind]:.2f} s of CPU; imports torch._dynamo: "
              f"{any(dynamo for _, _, dynamo in runs)}")
    ours, theirs = (medians[kind] for kind in KINDS)
    print(f"saved per training job: {theirs - ours:.2f} s of CPU, {(theirs - ours) / import_torch:.2f}x what "
          "`import torch` costs")


if __name__ == "__main__":
    main()
