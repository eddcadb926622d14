"""`python benchmarks/face_statistics.py`: how photographic the synthetic faces are (docs/faces.md).

Two image statistics, measured on grey levels of (N, 3, S, S) uint8 images:
- the slope of the radially averaged power spectrum in log-log coordinates (natural photographs: about -2 to -3;
  flat colour fields with sharp edges and pixel noise give a shallower slope, more power at high frequencies);
- the share of each image's variance in the finest Laplacian band h_0 (Eq. 6), the band LapCVAE's finest level
  must encode; pixel-frequency stripes, checks and noise inflate it with detail no latent code can hold.

    python benchmarks/face_statistics.py [--count 200] [--size 64] [--seed 0] [--photos]

measures `count` synthetic faces (indices of the default run's test split), cropped with the authors' box and
resized like `lapcvae prepare`, and with --photos also 148 px crops of scikit-image's natural photographs
(astronaut, coffee, chelsea, rocket), resized to `size` the same way.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from data.faces import draw_face
from data.prepare import resize, split_indices
from models.pyramid import laplacian_pyramid

CROP_TOP, CROP_LEFT, CROP_SIZE = 40, 15, 148  # the authors' crop (params data.crop)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # scikit-image's natural colour photographs


def grey(images: np.ndarray) -> np.ndarray:
    """(N, 3, S, S) uint8 -> (N, S, S) float64 luma (ITU-R 601 weights)."""
    weights = np.array([0.299, 0.587, 0.114])[None, :, None, None]
    return (images.astype(np.float64) * weights).sum(axis=1)


def spectrum_slope(images: np.ndarray) -> float:
    """Slope of log power against log spatial frequency, radially averaged over the images' spectra.

    Each grey image has its mean removed and a Hann window applied (so the border does not add a cross of
    spurious power); the power is averaged over images, then over rings of integer radius 1..S/2 - 1.
    """
    luma = grey(images)  # (N, S, S)
    size = luma.shape[-1]
    window = np.outer(np.hanning(size), np.hanning(size))
    luma = (luma - luma.mean(axis=(1, 2), keepdims=True)) * window
    power = (np.abs(np.fft.fftshift(np.fft.fft2(luma), axes=(1, 2))) ** 2).mean(axis=0)  # (S, S)
    rows, cols = np.indices(power.shape) - size // 2
    radius = np.round(np.hypot(rows, cols)).astype(int)
    radii = np.arange(1, size // 2)
    ring_power = np.array([power[radius == r].mean() for r in radii])
    slope, _ = np.polyfit(np.log(radii), np.log(ring_power), 1)
    return float(slope)


def finest_band_share(images: np.ndarray) -> float:
    """Mean over images of |h_0|^2 / |x - mean(x)|^2 on grey levels (h_0 of models.pyramid, 2 levels)."""
    luma = torch.from_numpy(grey(images))[:, None]  # (N, 1, S, S)
    h0 = laplacian_pyramid(luma, 2)[0]
    centred = luma - luma.mean(dim=(2, 3), keepdim=True)
    share = h0.pow(2).sum(dim=(1, 2, 3)) / centred.pow(2).sum(dim=(1, 2, 3))
    return float(share.mean())


def synthetic_faces(count: int, size: int, seed: int = 0, total: int = 3000) -> np.ndarray:
    """(count, 3, size, size) uint8: the first `count` test faces of a `total`-face set, as prepare makes them
    (without the JPEG round trip)."""
    indices = split_indices(total, 0.2, seed)["test"][:count]
    crops = np.stack([draw_face(seed, int(index))[0][CROP_TOP:CROP_TOP + CROP_SIZE,
                                                      CROP_LEFT:CROP_LEFT + CROP_SIZE] for index in indices])
    return resize(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), size).numpy()


def photo_crops(size: int) -> np.ndarray:
    """(N, 3, size, size) uint8: every non-overlapping 148 px crop of scikit-image's natural photographs."""
    try:
        import skimage.data
    except ImportError as error:
        raise SystemExit("--photos needs scikit-image: pip install scikit-image") from error
    crops = []
    for name in PHOTOS:
        photo = getattr(skimage.data, name)()[..., :3]  # (H, W, 3) uint8
        for top in range(0, photo.shape[0] - CROP_SIZE + 1, CROP_SIZE):
            for left in range(0, photo.shape[1] - CROP_SIZE + 1, CROP_SIZE):
                crops.append(photo[top:top + CROP_SIZE, left:left + CROP_SIZE])
    batch = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).contiguous()  # (N, 3, 148, 148)
    return resize(batch, size).numpy()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks/face_statistics.py", description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="synthetic test faces to measure")
    parser.add_argument("--size", type=int, default=64, help="resolution they are measured at")
    parser.add_argument("--seed", type=int, default=0, help="params seed of the face set")
    parser.add_argument("--photos", action="store_true", help="also measure scikit-image's photographs")
    args = parser.parse_args(argv)
    sets = {"synthetic faces": synthetic_faces(args.count, args.size, args.seed)}
    if args.photos:
        sets["scikit-image photos"] = photo_crops(args.size)
    print(f"| images ({args.size} px) | n | spectrum slope | h0 variance share |")
    print("|---|---|---|---|")
    for name, images in sets.items():
        print(f"| {name} | {len(images)} | {spectrum_slope(images):.2f} | {100 * finest_band_share(images):.1f}% |")


if __name__ == "__main__":
    main()
