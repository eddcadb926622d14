"""CPU seconds a fresh process spends on the two things that import torch._dynamo, each against the same work
without it: building a torch.optim optimizer and taking its first step (torch.optim.Adam, fused, against Muon,
training/optimizers.py, the default run's optimizer), and counting the FLOPs of one training step with torch's
FlopCounterMode (against the same step uncounted). One process each, interleaved, medians of one run.

Every job of the DAG is a new process, so this is paid once per job: a torch.optim optimizer imports torch._dynamo
when it is built (a training job under train.optimizer adam or rmsprop), FlopCounterMode when it counts (every
evaluation job, and the VAE trained at LapCVAE's FLOPs). `import torch` is measured beside them for scale.

    .venv/bin/python benchmarks/startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# One process: import torch (timed), build a small conv model and take one backward pass, then time `timed`.
PROBE = """
import sys, time
started = time.process_time()
import torch
from torch import nn
imported = time.process_time()
model = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 16))
step = lambda: model(torch.rand(4, 3, 32, 32)).square().sum().backward()
step()
before = time.process_time()
{timed}
print(imported - started, time.process_time() - before, "torch._dynamo" in sys.modules)
"""
# Each comparison: the work without torch._dynamo first, with it second.
COMPARISONS = {
    "optimizer (every training job)": {
        "Muon (training/optimizers.py)":
            "from training.optimizers import Muon\nMuon(model.parameters(), lr=1e-3).step()",
        "torch.optim.Adam, fused": "from torch.optim import Adam\nAdam(model.parameters(), lr=1e-3, fused=True).step()",
    },
    "FLOP counter (every evaluation job)": {
        "the step, not counted": "step()",
        "torch's FlopCounterMode":
            "from torch.utils.flop_counter import FlopCounterMode\nwith FlopCounterMode(display=False):\n    step()",
    },
}


def probe(timed: str) -> tuple[float, float, bool]:
    output = subprocess.run([sys.executable, "-c", PROBE.format(timed=timed)], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return float(output[0]), float(output[1]), output[2] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    kinds = {kind: timed for comparison in COMPARISONS.values() for kind, timed in comparison.items()}
    results: dict[str, list[tuple[float, float, bool]]] = {kind: [] for kind in kinds}
    for _ in range(args.repeats):  # interleaved, so that a change in the machine's load hits every kind alike
        for kind, timed in kinds.items():
            results[kind].append(probe(timed))
    medians = {kind: statistics.median(seconds for _, seconds, _ in runs) for kind, runs in results.items()}
    import_torch = statistics.median(imported for runs in results.values() for imported, _, _ in runs)
    print(f"import torch: {import_torch:.2f} s of CPU (median of {len(kinds) * args.repeats} processes)")
    for comparison, comparison_kinds in COMPARISONS.items():
        for kind in comparison_kinds:
            print(f"{comparison}: {kind}: {medians[kind]:.2f} s of CPU; imports torch._dynamo: "
                  f"{any(dynamo for _, _, dynamo in results[kind])}")
        without, with_dynamo = (medians[kind] for kind in comparison_kinds)
        print(f"{comparison}: torch._dynamo's import costs {with_dynamo - without:.2f} s of CPU per job, "
              f"{(with_dynamo - without) / import_torch:.2f}x what `import torch` costs")


if __name__ == "__main__":
    main()
