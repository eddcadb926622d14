"""Gaussian and Laplacian pyramids (paper Eqs. 6-7) on batched torch tensors.

The operators are Burt and Adelson's: a separable 5-tap binomial kernel [1, 4, 6, 4, 1] / 16 with reflect-101
borders (`dcb|abcd|cba`, torch's ``mode="reflect"``), exactly OpenCV's ``pyrDown`` and ``pyrUp``:

- ``downsample``: blur, then keep the even rows and columns (size ``ceil(n / 2)``).
- ``upsample``: put the pixels on the even positions of a zero grid twice the size, then blur with 4x the
  kernel (each of the two separable passes uses ``2 * [1, 4, 6, 4, 1] / 16``); an odd target size crops it.

Checked against OpenCV 5.0 (cv2.pyrDown / cv2.pyrUp, float64): equal to 2e-16, odd sizes included.

``laplacian_pyramid(x, levels)`` returns ``[h_0, ..., h_{K-1}, b_K]``, finest first, with ``levels = K + 1``
entries: ``g_0 = x``, ``g_{k+1} = downsample(g_k)``, ``h_k = g_k - upsample(g_{k+1})``, ``b_K = g_K`` (Eq. 6).
``reconstruct`` inverts it coarsest first, ``g_k = h_k + upsample(g_{k+1})`` (Eq. 7); since both sides use the
same ``upsample``, the round trip is exact up to the rounding of one subtraction and one addition per level.

Every function takes (B, C, H, W) tensors of any floating dtype on any device; the kernel is made in the
input's dtype and device. The blur is separable (a 5x1 then a 1x5 pass): a depthwise ``F.conv2d``
(``groups=C``) on GPUs, five shifted slices per pass on CPUs (several times faster there; see ``_blur``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["BINOMIAL_5", "downsample", "upsample", "laplacian_pyramid", "reconstruct", "pyramid_sizes"]

# Divided by 16: every weight is a small integer over a power of two, so exact in any float dtype.
BINOMIAL_5 = (1.0, 4.0, 6.0, 4.0, 1.0)


def _check(x: torch.Tensor, name: str = "x") -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, not {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor (convert uint8 images with .float() / 255), "
                        f"got {x.dtype}")


def _kernels(x: torch.Tensor, gain: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise vertical (C, 1, 5, 1) and horizontal (C, 1, 1, 5) kernels, each summing to `gain`."""
    channels = x.shape[1]
    taps = torch.tensor(BINOMIAL_5, dtype=x.dtype, device=x.device) * (gain / 16.0)
    vertical = taps.view(1, 1, 5, 1).expand(channels, 1, 5, 1)
    horizontal = taps.view(1, 1, 1, 5).expand(channels, 1, 1, 5)
    return vertical, horizontal


def _reflect101_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source index of every position of a dim of size `n` padded by `pad` (OpenCV's borderInterpolate)."""
    index = []
    for p in range(-pad, n + pad):
        if n == 1:
            index.append(0)
            continue
        while p < 0 or p >= n:
            p = -p if p < 0 else 2 * n - 2 - p
        index.append(p)
    return torch.tensor(index, dtype=torch.long, device=device)


def _pad_reflect101(x: torch.Tensor, pad: int = 2) -> torch.Tensor:
    height, width = x.shape[-2:]
    if height > pad and width > pad:
        return F.pad(x, (pad, pad, pad, pad), mode="reflect")
    # F.pad's reflect needs pad < size; tiny images (1 or 2 px) take the general index form.
    x = x.index_select(-2, _reflect101_index(height, pad, x.device))
    return x.index_select(-1, _reflect101_index(width, pad, x.device))


def _blur_conv(padded: torch.Tensor, gain: float, stride: int) -> torch.Tensor:
    vertical, horizontal = _kernels(padded, gain)
    channels = padded.shape[1]
    blurred = F.conv2d(padded, vertical, stride=(stride, 1), groups=channels)
    return F.conv2d(blurred, horizontal, stride=(1, stride), groups=channels)


def _blur_slices(padded: torch.Tensor, gain: float, stride: int) -> torch.Tensor:
    height, width = padded.shape[-2] - 4, padded.shape[-1] - 4

    def rows(k: int) -> torch.Tensor:
        return padded[..., k : k + height : stride, :]

    vertical = (rows(0) + rows(4)) + 4.0 * (rows(1) + rows(3)) + 6.0 * rows(2)

    def cols(k: int) -> torch.Tensor:
        return vertical[..., k : k + width : stride]

    both = (cols(0) + cols(4)) + 4.0 * (cols(1) + cols(3)) + 6.0 * cols(2)
    return both * (gain * gain / 256.0)


def _blur(x: torch.Tensor, gain: float, stride: int = 1, method: str = "auto") -> torch.Tensor:
    """Reflect-101 pad by 2, then the separable binomial blur, keeping every `stride`-th row and column.

    Each 1-D pass sums to `gain`. On GPUs a depthwise conv2d (groups=C, a 5x1 then a 1x5 kernel) does it; on
    CPUs the same taps as five shifted slices per pass, because PyTorch's CPU depthwise convolution is slower
    than that.
    Both give the same values up to float rounding (tests check it).
    """
    padded = _pad_reflect101(x, 2)
    if method == "auto":
        method = "slices" if x.device.type == "cpu" else "conv"
    if method == "conv":
        return _blur_conv(padded, gain, stride)
    if method == "slices":
        return _blur_slices(padded, gain, stride)
    raise ValueError(f"unknown blur method {method!r} (auto, conv, slices)")


def downsample(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's pyrDown: binomial blur with reflect-101 borders, keep even rows and columns.

    (B, C, H, W) -> (B, C, ceil(H / 2), ceil(W / 2)).
    """
    _check(x)
    return _blur(x, gain=1.0, stride=2)


def upsample(x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
    """OpenCV's pyrUp: zero-insert onto a grid of `size` = (H', W'), then blur with 4x the binomial kernel.

    `size` defaults to twice the input; each target dim must be 2n or 2n - 1 for an input dim n (the sizes
    `downsample` comes from); 2n - 1 is the 2n result cropped, as cv2.pyrUp(x, dstsize=...) does.
    """
    _check(x)
    batch, channels, height, width = x.shape
    if size is None:
        size = (2 * height, 2 * width)
    if len(size) != 2:
        raise ValueError(f"size must be (H, W), got {tuple(size)}")
    out_height, out_width = (int(s) for s in size)
    if (out_height + 1) // 2 != height or (out_width + 1) // 2 != width:
        raise ValueError(
            f"upsample: cannot upsample {height}x{width} to {out_height}x{out_width}; each target dim must "
            f"be 2n or 2n-1 of the input dim n (here {2 * height - 1} or {2 * height} rows by "
            f"{2 * width - 1} or {2 * width} columns)"
        )
    grid = x.new_zeros(batch, channels, 2 * height, 2 * width)
    grid[:, :, ::2, ::2] = x
    upsampled = _blur(grid, gain=2.0)  # 2 x 2 = 4x the kernel over the two passes
    return upsampled[:, :, :out_height, :out_width]  # an odd target crops the 2n result, as OpenCV does


def pyramid_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Spatial size of each pyramid entry, finest first; ValueError unless halving is exact."""
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive integer (number of pyramid entries), got {levels!r}")
    factor = 2 ** (levels - 1)
    if height % factor or width % factor:
        raise ValueError(
            f"a {height}x{width} image cannot be halved {levels - 1} times evenly for a {levels}-level "
            f"pyramid: height and width must be divisible by 2^(levels-1) = {factor}; use fewer levels or "
            "resize the image"
        )
    return [(height // 2**k, width // 2**k) for k in range(levels)]


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[h_0, ..., h_{K-1}, b_K] of Eq. 6, finest first; `levels` = K + 1 entries (1 gives [x])."""
    _check(x)
    pyramid_sizes(x.shape[-2], x.shape[-1], levels)
    pyramid: list[torch.Tensor] = []
    current = x
    for _ in range(levels - 1):
        coarser = downsample(current)
        pyramid.append(current - upsample(coarser, current.shape[-2:]))
        current = coarser
    pyramid.append(current)
    return pyramid


def reconstruct(pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
    """Eq. 7: collapse [h_0, ..., h_{K-1}, b_K] (finest first) back into the image."""
    if len(pyramid) == 0:
        raise ValueError("reconstruct: the pyramid is empty")
    for k, entry in enumerate(pyramid):
        _check(entry, f"pyramid[{k}]")
    image = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        image = detail + upsample(image, detail.shape[-2:])
    return image
