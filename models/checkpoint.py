"""Atomic checkpoint files and the registry that turns a checkpoint back into a model.

A model checkpoint is a plain dict of tensors and primitives, so it loads with `weights_only=True`:
    {"kind": str, "config": dict, "state_dict": dict, "meta": dict}
`kind` names the class (core/registry.py); the class rebuilds itself with `from_config(config)`.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core import registry
from core.atomic import save_torch

MODEL_KINDS = registry.checkpoint_kinds()  # checkpoint kind -> "module:Class"


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save through the one atomic writer (core/atomic.py): a reader never sees half a file."""
    try:
        save_torch(obj, path)
    except RuntimeError as error:  # torch's C++ writer reports a full disk as "basic_ios::clear: iostream error"
        raise checkpoint_write_error(Path(path), error) from error


def checkpoint_write_error(path: Path, error: BaseException) -> OSError:
    """An OSError naming the checkpoint and the likely fix, for torch.save's messageless C++ failures."""
    free = shutil.disk_usage(path.parent).free if path.parent.is_dir() else None
    if free is not None and free < 64 * 2**20:  # under 64 MiB left: the write failed for room
        return OSError(errno.ENOSPC, f"no space left to write checkpoint {path} ({free / 2**20:.0f} MiB free); "
                       "free some space there (or point paths.results elsewhere) and rerun")
    return OSError(errno.EIO, f"cannot write checkpoint {path} ({error}); check that its folder is writable "
                   "and has free space, then rerun")


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
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise ValueError(f"checkpoint {path} cannot be read ({error}); delete it and retrain") from error
    if not isinstance(checkpoint, dict):
        raise ValueError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a checkpoint of this suite "
                         "(a dict with kind, config, state_dict); pass a file written by lapcvae train-*")
    return checkpoint


def model_class(kind: str) -> type[nn.Module]:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; known kinds: {', '.join(MODEL_KINDS)}")
    return registry.load_class(MODEL_KINDS[kind])


def check_checkpoint(
    checkpoint: dict[str, Any], path: str | Path, expected_kind: str | None = None,
    expected_resolution: int | None = None, expected_config: dict[str, Any] | None = None,
    expected_whole: bool = False, expected_name: str | None = None,
) -> None:
    """Refuse a checkpoint that is malformed, holds non-finite weights, or is not the kind / resolution / settings
    / whole model / training job the caller asked for."""
    kind, config = checkpoint.get("kind"), checkpoint.get("config")
    if kind not in MODEL_KINDS or not isinstance(config, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ValueError(f"checkpoint {path} is not a model checkpoint of this suite (kind {kind!r}, keys "
                         f"{sorted(map(str, checkpoint))}); pass a file written by lapcvae train-*")
    if expected_kind is not None and kind != expected_kind:
        raise ValueError(f"checkpoint {path} holds a {kind} model, but a {expected_kind} model was asked for; "
                         f"pass a {expected_kind} checkpoint (or the matching --model)")
    resolution = config.get("resolution")
    if expected_resolution is not None and resolution != int(expected_resolution):
        raise ValueError(f"checkpoint {path} is a {resolution} px model, but {expected_resolution} px was asked "
                         f"for; pass the {expected_resolution} px checkpoint (or --res {resolution})")
    for key, value in (expected_config or {}).items():
        if config.get(key) != value:
            raise ValueError(f"checkpoint {path} has {key}={config.get(key)!r}, but {key}={value!r} was asked "
                             "for; pass the checkpoint of that model")
    levels, trained = config.get("levels"), config.get("trained_levels", config.get("levels"))
    if expected_whole and trained != levels:  # a per-level model's coarser checkpoint holds only levels k..K
        raise ValueError(f"checkpoint {path} holds only the {trained} coarsest of {levels} pyramid levels, but the "
                         f"whole model was asked for; pass its level0.pt")
    name = checkpoint.get("meta", {}).get("name") if isinstance(checkpoint.get("meta"), dict) else None
    if expected_name is not None and name is not None and name != expected_name:
        raise ValueError(f"checkpoint {path} was written by training job {name}, but {expected_name}'s checkpoint "
                         "was asked for; pass that model's checkpoint (or the matching --model)")
    check_finite_weights(checkpoint["state_dict"], path)


def first_non_finite(state_dict: dict[str, Any]) -> tuple[str, int] | None:
    """(name, count) of the first floating tensor holding NaN or inf values, or None when all are finite."""
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                return key, bad
    return None


def check_finite_weights(state_dict: dict[str, Any], path: str | Path) -> None:
    """Refuse NaN or infinite weights (a diverged run): the model would reconstruct and sample nonsense."""
    found = first_non_finite(state_dict)
    if found is not None:
        raise ValueError(f"checkpoint {path} holds {found[1]} non-finite values (NaN or inf) in {found[0]}: its "
                         "training diverged; retrain it (e.g. with a lower lr or train.grad_clip)")


def load_model(
    path: str | Path, device: str | torch.device = "cpu", *, expected_kind: str | None = None,
    expected_resolution: int | None = None, expected_config: dict[str, Any] | None = None,
    expected_whole: bool = False, expected_name: str | None = None,
) -> nn.Module:
    """Rebuild the model a checkpoint holds, in eval mode on `device`; non-finite weights are refused.

    expected_*: refuse (ValueError naming both) a checkpoint of another kind, resolution or config values, one
    that holds only a per-level model's coarser levels (`expected_whole`), or one whose training job
    (`meta["name"]`, core.registry.training_label) is another's; a checkpoint without that name passes.
    """
    checkpoint = load_checkpoint(path, device)
    check_checkpoint(checkpoint, path, expected_kind, expected_resolution, expected_config, expected_whole,
                     expected_name)
    try:
        model = model_class(checkpoint["kind"]).from_config(checkpoint["config"])
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, IndexError, ValueError, RuntimeError) as error:
        raise ValueError(f"checkpoint {path} does not match its own {checkpoint['kind']} configuration ({error}); "
                         "it was written by other code or altered: delete it and retrain") from error
    model.meta = checkpoint.get("meta", {})
    return model.to(device).eval()
