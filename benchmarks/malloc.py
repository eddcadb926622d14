"""CPU seconds and page faults of one training job with glibc's default malloc against freed memory kept in the
process (core/memory.py, what every `lapcvae` command does at start), side by side in one run.

Each process trains the default VAE at one resolution (params.yaml, the shared training loop, one thread) on
random images for one epoch, the two settings interleaved; the weights must come out identical (the setting moves
no number). Medians over the repeats; ratios are default / kept.

    .venv/bin/python benchmarks/malloc.py [--res 128] [--images 480] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROBE = """
import hashlib, json, resource, sys, tempfile
from pathlib import Path
import numpy as np
import torch
torch.set_num_threads(1)
keep, res, count = sys.argv[1] == "kept", int(sys.argv[2]), int(sys.argv[3])
if keep:
    from core.memory import keep_freed_memory
    assert keep_freed_memory(), "mallopt did not take effect"
from core.params import load_params
from training.baseline_jobs import train_baseline
params = load_params()
params["budget"]["epochs"] = 1
images = np.random.default_rng(0).integers(0, 256, (count, 3, res, res), dtype=np.uint8)
before = resource.getrusage(resource.RUSAGE_SELF)
with tempfile.TemporaryDirectory() as folder:
    model = train_baseline(params, "vae", res, images, Path(folder) / "model.pt")[0]
after = resource.getrusage(resource.RUSAGE_SELF)
digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in model.state_dict().values()))
print(json.dumps({"user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
                  "faults": after.ru_minflt - before.ru_minflt, "max_rss_mb": after.ru_maxrss / 1024,
                  "weights": digest.hexdigest()}))
"""
SETTINGS = ("default", "kept")


def run_once(setting: str, res: int, images: int) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, setting, str(res), str(images)], cwd=REPO,
                            env={"OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent)},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--res", type=int, default=128, help="the VAE's resolution (params.yaml has 64 and 128)")
    parser.add_argument("--images", type=int, default=480, help="random training images: one epoch over them")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {setting: [] for setting in SETTINGS}
    for _ in range(args.repeats):
        for setting in SETTINGS:
            runs[setting].append(run_once(setting, args.res, args.images))
    digests = {run["weights"] for setting in SETTINGS for run in runs[setting]}
    print(f"VAE at {args.res} px, one epoch over {args.images} images, one thread; medians of {args.repeats}, "
          f"weights identical in all runs: {len(digests) == 1}")
    print(f"{'':10} {'user s':>8} {'sys s':>8} {'CPU s':>8} {'page faults':>12} {'max RSS MB':>11}")
    medians = {}
    for setting in SETTINGS:
        rows = runs[setting]
        medians[setting] = {key: statistics.median(row[key] for row in rows)
                            for key in ("user", "sys", "faults", "max_rss_mb")}
        medians[setting]["cpu"] = statistics.median(row["user"] + row["sys"] for row in rows)
        m = medians[setting]
        print(f"{setting:10} {m['user']:8.2f} {m['sys']:8.2f} {m['cpu']:8.2f} {m['faults']:12.0f} "
              f"{m['max_rss_mb']:11.0f}")
    default, kept = medians["default"], medians["kept"]
    print(f"default / kept: CPU {default['cpu'] / kept['cpu']:.2f}x, system time "
          f"{default['sys'] / max(kept['sys'], 1e-9):.1f}x, page faults {default['faults'] / kept['faults']:.1f}x; "
          f"max RSS kept / default {kept['max_rss_mb'] / default['max_rss_mb']:.2f}x")
    if len(digests) != 1:
        sys.exit("the weights differ between runs: the setting must not change the arithmetic")


if __name__ == "__main__":
    main()
