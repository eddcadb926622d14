"""Median over test images of the reconstruction's pixel std over the original's, per evaluated model (issue 12
part 4: VAE/GAN must keep at least half the originals' contrast).

    python benchmarks/std_ratio.py results 64 data/prepared
"""

import sys
from pathlib import Path

import numpy as np

results, res, prepared = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
test = np.load(prepared / res / "test.npy")
test = test.reshape(len(test), -1).astype(np.float64)  # (N, 3 * res * res)
for folder in sorted((results / "eval" / res).iterdir()):
    path = folder / "reconstructions.npy"
    if path.exists():
        recon = np.load(path).reshape(len(test), -1).astype(np.float64)
        print(res, folder.name, round(float(np.median(recon.std(1) / test.std(1))), 3))
