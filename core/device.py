"""Which device a job runs on and whether it computes bf16 natively: shared by training, evaluation and commands."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch


def resolve_device(requested: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit name must be available."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but no CUDA GPU is visible; set device: auto or cpu")
    if requested == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' was requested but MPS is not available; set device: auto or cpu")
    if requested not in {"cpu", "cuda", "mps"}:
        raise ValueError(f"unknown device {requested!r}; use auto, cpu, cuda or mps")
    return torch.device(requested)


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 matmuls natively (AVX512-BF16 or AMX), as oneDNN reports it."""
    with contextlib.suppress(Exception):
        if torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return True
    flags = ""
    with contextlib.suppress(OSError):
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    return torch.backends.mkldnn.is_available() and any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def autocast_dtype(device: torch.device, bf16: bool) -> torch.dtype | None:
    """bfloat16 where `train.bf16` asks for it and the device computes it natively, else None (fp32)."""
    if not bf16:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return None
