"""`python benchmarks/fitted_prior.py`: which per-level Gaussian a LapCVAE's fitted prior (models/fitted_prior.py) fits.

Trains a small LapCVAE with M (all levels jointly) on synthetic faces, fits the prior to the training images
(a) against M: r_k = mu_k - R_k(mu'_{k+1}), sampled as R_k + r_k, and (b) marginally: mu_k, each level drawn
alone; then prints for each, and for the paper's N(0, I) prior with M:
- the held-out negative log-density (nats) of the test images' posterior means under the prior, per level and
  summed (the conditional densities of (a) and the marginals of (b) are both densities of z_k: comparable);
- how far the samples' mean image and per-pixel standard deviation lie from the test images' (RMS over pixels).

    python benchmarks/fitted_prior.py [--size 32] [--train 600] [--test 200] [--epochs 30] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from data.faces import draw_face
from data.prepare import resize
from models.fitted_prior import fit_prior, fitted_latents, sample_fitted
from models.lapcvae import JointTrainable, LapCVAE
from training.loop import fit


def faces(count: int, size: int, seed: int) -> np.ndarray:
    """(count, 3, size, size) uint8: synthetic faces cropped with the authors' box and resized as `prepare` does."""
    crops = np.stack([draw_face(seed, index)[0][40:188, 15:163] for index in range(count)])
    return resize(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), size).numpy()


def distances(samples: torch.Tensor, test: torch.Tensor) -> tuple[float, float]:
    """RMS distance of the mean images and of the per-pixel standard deviations."""
    mean = (samples.mean(dim=0) - test.mean(dim=0)).pow(2).mean().sqrt()
    std = (samples.std(dim=0) - test.std(dim=0)).pow(2).mean().sqrt()
    return float(mean), float(std)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--train", type=int, default=600)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = faces(args.train + args.test, args.size, seed=1)
    train, test = images[: args.train], torch.from_numpy(images[args.train:]).float() / 255.0
    torch.manual_seed(args.seed)
    model = LapCVAE(resolution=args.size, levels=3, latent_dims=[16, 16, 16], kl_weights=[0.01, 0.01, 0.01],
                    widths=[16, 32, 64], feature_size=4, m_hidden=64, use_m=True)
    settings = {"lr": 2e-3, "batch_size": 32, "epochs": args.epochs, "log_every": 50, "bf16": False,
                "grad_clip": None}
    with tempfile.TemporaryDirectory() as folder:
        fit(JointTrainable(model), train, settings=settings, seed=args.seed, output=Path(folder) / "model.pt",
            export=model, device="cpu")
    model.eval()
    for against_m in (True, False):
        prior = fit_prior(model, train, batch_size=64, ridge=1e-4, seed=args.seed, against_m=against_m)
        with torch.no_grad():
            rows = fitted_latents(model, test, against_m)
        nll = [float(-torch.distributions.MultivariateNormal(mean, covariance).log_prob(row.double()).mean())
               for row, mean, covariance in zip(rows, prior.means, prior.covariances, strict=True)]
        mean_distance, std_distance = distances(sample_fitted(model, prior, 400, seed=args.seed), test)
        print(f"fitted {'against M' if against_m else 'marginal '}: test NLL per level (finest first) "
              f"{[round(value, 2) for value in nll]}, sum {sum(nll):.2f}; mean-image distance {mean_distance:.4f}, "
              f"per-pixel std distance {std_distance:.4f}")
    mean_distance, std_distance = distances(model.sample(400, seed=args.seed), test)
    print(f"N(0, I) with M (paper): mean-image distance {mean_distance:.4f}, per-pixel std distance {std_distance:.4f}")


if __name__ == "__main__":
    main()
