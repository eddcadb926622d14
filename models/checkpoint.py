"""Atomic checkpoint files and the registry that turns a checkpoint back into a model.

A model checkpoint is a plain dict of tensors and primitives, so it loads with `weights_only=True`:
    {"kind": str, "config": dict, "state_dict": dict, "meta": dict}
`kind` names the class (core/registry.py); the class rebuilds itself with `from_config(config)`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import registry

MODEL_KINDS = registry.checkpoint_kinds()  # checkpoint kind -> "module:Class"


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temporary file in the same folder, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        torch.save(obj, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_model(path: str | Path, model: nn.Module, meta: dict[str, Any] | None = None) -> None:
    """Write a model checkpoint; `model` must carry `kind` and `config` (see models/interface.py)."""
    atomic_save(
        {"kind": model.kind, "config": model.config, "state_dict": model.state_dict(), "meta": meta or {}}, path
    )


def add_meta(path: str | Path, **values: Any) -> None:
    """Add entries to a written checkpoint's `meta` (atomically: the file stays whole)."""
    checkpoint = load_checkpoint(path)
    checkpoint["meta"] = {**checkpoint.get("meta", {}), **values}
    atomic_save(checkpoint, path)


def pyramid_train_seconds(meta: dict[str, Any]) -> float | None:
    """Training time of the whole model a checkpoint holds, from its own metadata.

    A LapCVAE is trained one job per level (level{k}.pt holds levels k..K), and M retraining starts from the
    finished pyramid: each of those jobs records in `pyramid_train_seconds` its own time plus that of the
    checkpoint it was built on (workflow/commands/train.py), so no sibling file is read. A baseline's time is
    its own job's (`train_seconds`).
    """
    return meta.get("pyramid_train_seconds", meta.get("train_seconds"))


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: train that model first (see README)")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise ValueError(f"checkpoint {path} cannot be read ({error}); delete it and retrain") from error


def model_class(kind: str) -> type[nn.Module]:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {', '.join(MODEL_KINDS)}")
    return registry.load_class(MODEL_KINDS[kind])


def load_model(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model a checkpoint holds, in eval mode on `device`."""
    checkpoint = load_checkpoint(path, device)
    model = model_class(checkpoint["kind"]).from_config(checkpoint["config"])
    model.load_state_dict(checkpoint["state_dict"])
    model.meta = checkpoint.get("meta", {})
    return model.to(device).eval()
