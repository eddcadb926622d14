"""The one training loop of the suite: every model (LapCVAE levels, M retraining, VAE, VAE/GAN) trains with `fit`.

It owns the optimizers (one Adam per parameter group), the device, bf16 autocast, per-epoch resume checkpoints,
the per-step CSV log, NaN/Inf detection and multi-process data parallelism (`torchrun`).

Determinism: batches are shuffled by a generator seeded from (seed, epoch), and the global torch RNG (used by
reparameterisation noise) is reseeded from (seed, epoch, rank) at the start of every epoch. The RNG state at an
epoch boundary is therefore a function of the epoch alone, which is what the resume checkpoint records (`epoch`),
so a restarted job continues bitwise where the interrupted one was, on every rank.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import os
import platform
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from models.checkpoint import atomic_save, save_model

logger = logging.getLogger(__name__)

SETTINGS_KEYS = ("lr", "batch_size", "epochs", "log_every", "bf16", "grad_clip")


class NonFiniteLossError(ValueError):
    """A loss became NaN or Inf; the message names the step, the objective and the checkpoint kept."""


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


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (params seed, names, indices)."""
    digest = hashlib.sha256(json.dumps([str(part) for part in parts]).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def hardware_info(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"device": str(device), "torch": str(torch.__version__), "hostname": socket.gethostname(), "cpu": cpu,
            "cpu_threads": torch.get_num_threads(), "gpu": gpu}


class _Distributed:
    """Rank and world size from torchrun's environment; initialises the process group if needed."""

    def __init__(self, device: str):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(self.rank)))
        self.device = resolve_device(device)
        if self.device.type == "cuda" and self.world_size > 1:
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        # nccl reduces CUDA tensors, gloo CPU ones.
        self.comm_device = self.device if self.device.type == "cuda" else torch.device("cpu")
        self.owns_group = self.world_size > 1 and not dist.is_initialized()
        if self.owns_group:
            dist.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_min(self, values: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            dist.all_reduce(values, op=dist.ReduceOp.MIN)
        return values

    def average(self, tensors: list[torch.Tensor]) -> None:
        """Average tensors in place over the ranks, in one collective."""
        if not self.enabled or not tensors:
            return
        flat = torch.cat([t.reshape(-1).float() for t in tensors])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for t in tensors:
            t.copy_(flat[offset: offset + t.numel()].view_as(t))
            offset += t.numel()

    def broadcast_state(self, module: nn.Module) -> None:
        """Every rank starts from rank 0's parameters and buffers (what DDP's constructor does)."""
        if self.enabled:
            for tensor in module.state_dict().values():
                dist.broadcast(tensor, src=0)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


def _check_inputs(trainable: Any, train_images: np.ndarray, settings: dict[str, Any]) -> None:
    missing = [key for key in SETTINGS_KEYS if key not in settings]
    if missing:
        raise ValueError(f"training settings lack {missing}; build them with workflow.config.train_settings")
    if not isinstance(trainable, nn.Module) or not hasattr(trainable, "training_step"):
        raise ValueError("fit needs an nn.Module with parameter_groups() and training_step() (models/interface.py)")
    if not isinstance(train_images, np.ndarray) or train_images.dtype != np.uint8:
        raise ValueError("train_images must be a uint8 numpy array (N, 3, H, W); run `lapcvae prepare` first")
    if train_images.ndim != 4 or train_images.shape[1] != 3 or train_images.shape[0] == 0:
        raise ValueError(f"train_images must have shape (N, 3, H, W) with N > 0, got {train_images.shape}; "
                         "check the prepared data file")


OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}  # settings["optimizer"]


def _make_optimizers(trainable: nn.Module, settings: dict[str, Any]) -> dict[str, torch.optim.Optimizer]:
    """One optimizer per group (settings `optimizer`, default Adam, with `lr` and `weight_decay`); a trainable may
    set `optimizer_settings = {group: {"lr": .., ...}}`."""
    overrides = getattr(trainable, "optimizer_settings", {})
    optimizer = OPTIMIZERS[settings.get("optimizer", "adam")]
    optimizers = {}
    for group, params in trainable.parameter_groups().items():
        options = {"lr": settings["lr"], "weight_decay": settings.get("weight_decay", 0.0), **overrides.get(group, {})}
        optimizers[group] = optimizer(params, **options)
    return optimizers


class _CsvLog:
    """Per-step logs in `<output stem>.log.csv` (step, epoch, one column per log key), written on rank 0."""

    def __init__(self, path: Path, resume_step: int | None):
        self.path = path
        self.columns: list[str] | None = None
        if resume_step is None:
            path.unlink(missing_ok=True)
        elif path.is_file():
            # Drop rows logged after the checkpoint we resume from, so the file matches an uninterrupted run.
            with path.open(newline="") as handle:
                reader = csv.DictReader(handle)
                self.columns = reader.fieldnames
                rows = [row for row in reader if int(row["step"]) <= resume_step]
            temporary = path.with_name(path.name + ".tmp")
            with temporary.open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns)
                writer.writeheader()
                writer.writerows(rows)
            os.replace(temporary, path)

    def write(self, step: int, epoch: int, logs: dict[str, float]) -> None:
        new_file = self.columns is None
        if new_file:
            self.columns = ["step", "epoch", *logs]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore", restval="")
            if new_file:
                writer.writeheader()
            writer.writerow({"step": step, "epoch": epoch, **logs})


def _batches(count: int, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
    """Shuffled index batches; the remainder is dropped (batch norm needs full batches), but never everything."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed + epoch))
    size = min(batch_size, count)
    for start in range(0, count - size + 1, size):
        yield order[start: start + size]


def steps_per_epoch(count: int, batch_size: int) -> int:
    return count // min(batch_size, count)


def _fingerprint(settings: dict[str, Any], seed: int, name: str, groups: list[str], shape: tuple, world: int) -> str:
    description = {"settings": settings, "seed": seed, "name": name, "groups": groups, "shape": list(shape),
                   "world_size": world}
    return hashlib.sha256(json.dumps(description, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _load_resume(path: Path, fingerprint: str, device: torch.device) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # a foreign or truncated file: start over rather than fail
        logger.warning("ignoring unreadable resume checkpoint %s (%s)", path, error)
        return None
    if state.get("fingerprint") != fingerprint:
        logger.warning("ignoring resume checkpoint %s: it was made with other settings, data or seed", path)
        return None
    return state


def fit(
    trainable: nn.Module, train_images: np.ndarray, *, settings: dict[str, Any], seed: int, output: str | Path,
    export: nn.Module | None = None, device: str = "auto", name: str = "",
) -> dict[str, Any]:
    """Train `trainable` (a models.interface.Trainable nn.Module) and save `export or trainable` to `output`.

    train_images: uint8 (N, 3, H, W), possibly a memmap; settings: workflow.config.train_settings(...).
    Resumes from `<output>.resume.pt` if an earlier run with the same settings was interrupted; logs every
    `log_every` steps to `<output stem>.log.csv`. Returns the metadata stored in the checkpoint.
    """
    _check_inputs(trainable, train_images, settings)
    output = Path(output)
    resume_path = output.with_name(output.name + ".resume.pt")
    ranks = _Distributed(device)
    device_ = ranks.device
    label = name or output.stem
    try:
        trainable.to(device_)
        ranks.broadcast_state(trainable)
        optimizers = _make_optimizers(trainable, settings)
        groups = {group: list(params) for group, params in trainable.parameter_groups().items()}
        fingerprint = _fingerprint(settings, seed, label, list(groups), train_images.shape, ranks.world_size)
        state = _load_resume(resume_path, fingerprint, device_)
        start_epoch, step, train_seconds = 0, 0, 0.0
        if state is not None:
            trainable.load_state_dict(state["model"])
            for group, optimizer in optimizers.items():
                optimizer.load_state_dict(state["optimizers"][group])
            start_epoch, step, train_seconds = state["epoch"], state["step"], state["train_seconds"]
            logger.info("%s: resuming from %s at epoch %d (step %d)", label, resume_path, start_epoch, step)
        log = _CsvLog(output.with_name(output.stem + ".log.csv"), step if state is not None else None) \
            if ranks.main else None

        # Read once, kept on the device as uint8 (4x smaller than float); batches become float on the fly.
        images = torch.from_numpy(np.array(train_images)).to(device_)  # (N, 3, H, W) uint8, read once
        batch_size, epochs = settings["batch_size"], settings["epochs"]
        if min(batch_size, len(images)) < ranks.world_size:
            raise ValueError(f"batch_size {batch_size} is smaller than the {ranks.world_size} processes; raise it")
        per_epoch = steps_per_epoch(len(images), batch_size)
        use_bf16 = bool(settings["bf16"]) and device_.type == "cuda"
        progress = tqdm(total=epochs * per_epoch, initial=step, desc=label, disable=not ranks.main,
                        dynamic_ncols=True)
        trainable.train()
        for epoch in range(start_epoch, epochs):
            torch.manual_seed(derive_seed(seed, "noise", epoch, ranks.rank))
            epoch_start = time.perf_counter()
            for indices in _batches(len(images), batch_size, seed, epoch):
                shard = indices[ranks.rank:: ranks.world_size].to(device_)  # each rank a shard of every batch
                batch = images[shard].float().div_(255.0)  # (b, 3, H, W) in [0, 1]
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_bf16):
                    result = trainable.training_step(batch)
                _update(result.objectives, groups, optimizers, settings, ranks, step, epoch, label, resume_path)
                _sync_buffers(trainable, ranks)
                step += 1
                progress.update(1)
                if step % settings["log_every"] == 0 and ranks.main:
                    values = {key: float(value) for key, value in result.logs.items()}
                    log.write(step, epoch, values)
                    progress.set_postfix({key: f"{value:.4g}" for key, value in values.items()})
            train_seconds += time.perf_counter() - epoch_start
            if ranks.main:
                atomic_save({"fingerprint": fingerprint, "model": trainable.state_dict(),
                             "optimizers": {group: opt.state_dict() for group, opt in optimizers.items()},
                             "epoch": epoch + 1, "step": step, "train_seconds": train_seconds}, resume_path)
        progress.close()
        meta = {"name": label, "train_seconds": train_seconds, "steps": step, "epochs": epochs, "seed": seed,
                "world_size": ranks.world_size, "settings": dict(settings), **hardware_info(device_)}
        if ranks.main:
            save_model(output, export if export is not None else trainable, meta)
            resume_path.unlink(missing_ok=True)
            logger.info("%s: %d steps in %.1f s -> %s", label, step, train_seconds, output)
        ranks.barrier()
        return meta
    finally:
        ranks.close()


def _update(
    objectives: dict[str, torch.Tensor | None], groups: dict[str, list[nn.Parameter]],
    optimizers: dict[str, torch.optim.Adam], settings: dict[str, Any], ranks: _Distributed,
    step: int, epoch: int, label: str, resume_path: Path,
) -> None:
    """Route each objective's gradient to its own group only, average over ranks, step that group's Adam.

    Why not DistributedDataParallel: DDP reduces whatever one backward() left in .grad, but here several
    objectives each update their own group from one shared graph (VAE/GAN), via torch.autograd.grad; so the
    gradients are averaged with one all_reduce per group, and the ranks agree first (one MIN all_reduce) on
    which groups update this step and on whether every loss is finite.
    """
    names = list(groups)
    unknown = set(objectives) - set(names)
    if unknown:
        raise ValueError(f"{label}: training_step returned objectives {sorted(unknown)} with no parameter group")
    active = [objectives.get(group) is not None for group in names]
    values = [objectives[group].detach().float().cpu() if flag else torch.zeros(())
              for group, flag in zip(names, active, strict=True)]
    finite = torch.stack([torch.isfinite(value).float() for value in values])  # (G,)
    flags = torch.cat([finite, torch.tensor(active, dtype=torch.float32)])  # (2G,)
    agreed = ranks.all_min(flags.to(ranks.comm_device)).cpu()
    for index, group in enumerate(names):
        if active[index] and agreed[index] < 1:
            value = float(values[index]) if finite[index] < 1 else float("nan")
            raise NonFiniteLossError(
                f"{label}: objective {group!r} is {value} at step {step} (epoch {epoch}); kept the last good "
                f"checkpoint {resume_path if resume_path.exists() else '(none yet)'}: lower the learning rate or "
                "set train.grad_clip, then rerun to resume"
            )
    updating = [group for index, group in enumerate(names) if agreed[len(names) + index] >= 1]
    for position, group in enumerate(updating):
        params = groups[group]
        grads = torch.autograd.grad(objectives[group], params, retain_graph=position < len(updating) - 1,
                                    allow_unused=True)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad  # None where the objective does not reach a parameter (the same on every rank)
    for group in updating:
        params = groups[group]
        ranks.average([param.grad for param in params if param.grad is not None])
        if settings["grad_clip"] is not None:
            nn.utils.clip_grad_norm_(params, settings["grad_clip"])
        optimizers[group].step()
        for param in params:
            param.grad = None


def _sync_buffers(trainable: nn.Module, ranks: _Distributed) -> None:
    """Average floating buffers (batch-norm running statistics) so every rank holds the same model."""
    if ranks.enabled:
        ranks.average([buffer for buffer in trainable.buffers() if buffer.is_floating_point()])
