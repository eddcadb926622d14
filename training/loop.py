"""The one training loop of the suite: every model (LapCVAE levels, M retraining, VAE, VAE/GAN) trains with `fit`.

It owns the optimizers (one per parameter group, params `train.optimizer`), the device, bf16 autocast, per-epoch
resume checkpoints, the per-step CSV log, NaN/Inf detection and multi-process data parallelism (`torchrun`).

Determinism: batches are shuffled by a generator seeded from (seed, epoch), and the global torch RNG (used by
reparameterisation noise) is reseeded from (seed, epoch, rank) at the start of every epoch. The RNG state at an
epoch boundary is therefore a function of the epoch alone, which is what the resume checkpoint records (`epoch`),
so a restarted job continues bitwise where the interrupted one was, on every rank.

Speed: conv models train in channels-last memory format; `train.bf16` autocasts to bfloat16 on CUDA and on CPUs
with native bf16 (AVX512-BF16 / AMX; elsewhere it would be emulated hundreds of times slower, so fp32 is used and
logged). Losses are computed in fp32 by the models and optimizer state stays fp32. Loss finiteness is checked on
the device and read back only at logging steps and epoch ends, so a GPU is not stalled every step.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import platform
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from core.atomic import atomic_path, exclusive_writer
from core.device import autocast_dtype, resolve_device
from core.progress import progress_bar
from data.arrays import read_rows
from models.checkpoint import atomic_save, first_non_finite, save_model
from models.interface import io_parameters
from training.optimizers import Muon

logger = logging.getLogger(__name__)

SETTINGS_KEYS = ("lr", "batch_size", "epochs", "log_every", "bf16", "grad_clip")
# Optional settings (settings dicts without them keep working): train.compile wraps training_step in
# torch.compile; off by default because on the default run's job sizes its compile time does not pay
# (benchmarks/train.py --compile measures it).
OPTIONAL_SETTINGS = {"compile": False, "schedule": None, "kl_warmup": 0.0}
# train.schedule: {warmup: fraction of all steps with a linear warm-up from 0, decay: constant | linear | cosine to
# zero at the last step}; None keeps every learning rate constant. The factor depends on the global step alone, so
# a resumed run continues on the same curve, and every parameter group of a model follows the same one.
DECAYS = ("constant", "linear", "cosine")


def lr_factor(schedule: dict[str, Any] | None, step: int, total_steps: int) -> float:
    """The multiplier of every base learning rate at 0-based `step` of `total_steps` (train.schedule)."""
    if not schedule:
        return 1.0
    decay = schedule.get("decay", "constant")
    if decay not in DECAYS:
        raise ValueError(f"train.schedule.decay {decay!r} is not one of {', '.join(DECAYS)}")
    warmup = int(round(float(schedule.get("warmup", 0.0)) * total_steps))
    if step < warmup:
        return (step + 1) / warmup  # linear warm-up; never 0, so the first step moves
    if decay == "constant" or total_steps <= warmup:
        return 1.0
    progress = (step - warmup) / (total_steps - warmup)  # 0 at the end of warm-up, -> 1 at the last step
    if decay == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def kl_factor(warmup: float, step: int, total_steps: int) -> float:
    """The multiplier of every KL term at 0-based `step` (train.kl_warmup): rising linearly from 1 / w to 1 over
    the first w = warmup * total_steps steps, then 1. Starting with little KL pressure keeps a decoder that
    already sees the coarser levels (or a strong prior) from learning to ignore its latent (posterior collapse;
    Bowman et al. 2016's KL annealing)."""
    warmup_steps = int(round(warmup * total_steps))
    if step >= warmup_steps:
        return 1.0
    return (step + 1) / warmup_steps


class NonFiniteLossError(ValueError):
    """A loss became NaN or Inf; the message names the step, the objective and the checkpoint kept."""


def uses_channels_last(trainable: nn.Module) -> bool:
    """Conv models train channels-last (faster oneDNN / cuDNN kernels); a model may opt out with
    `channels_last = False`."""
    if not getattr(trainable, "channels_last", True):
        return False
    return any(isinstance(module, nn.Conv2d | nn.ConvTranspose2d) for module in trainable.modules())


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (params seed, names, indices)."""
    digest = hashlib.sha256(json.dumps([str(part) for part in parts]).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def paired_seeds(seed: int, resolution: int) -> tuple[int, int]:
    """(initialisation seed, training seed) of every training job at `resolution`: one params seed gives every
    model the same initialisation stream (where shapes allow, the same initial weights) and the same data order
    and noise, so that differences between models trained from one seed pair across seeds."""
    return derive_seed(seed, "init", resolution), derive_seed(seed, "train", resolution)


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
        raise ValueError(f"training settings lack {missing}; build them with core.params.train_settings")
    if not isinstance(trainable, nn.Module) or not hasattr(trainable, "training_step"):
        raise ValueError("fit needs an nn.Module with parameter_groups() and training_step() (models/interface.py)")
    if not isinstance(train_images, np.ndarray) or train_images.dtype != np.uint8:
        raise ValueError("train_images must be a uint8 numpy array (N, 3, H, W); run `lapcvae prepare` first")
    if train_images.ndim != 4 or train_images.shape[1] != 3 or train_images.shape[0] == 0:
        raise ValueError(f"train_images must have shape (N, 3, H, W) with N > 0, got {train_images.shape}; "
                         "check the prepared data file")


# settings["optimizer"]. The loop sets every rate each step (train.schedule) rather than torch.optim.lr_scheduler,
# which drives torch.optim's optimizers only, not Muon, nor Muon's matrix_lr.
OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "muon": Muon}
Optimizer = torch.optim.Optimizer | Muon
# Optimizers with a fused kernel: one pass over each parameter instead of ~10 elementwise ops, so faster steps
# (benchmarks/step_options.py measures them). Same update rule, different rounding.
FUSED = {"adam"}
SCHEDULED_RATES = ("lr", "matrix_lr")  # the step sizes train.schedule scales (matrix_lr: Muon's weight matrices)


def make_optimizers(
    trainable: nn.Module, settings: dict[str, Any], *, fused: bool = True
) -> dict[str, Optimizer]:
    """One optimizer per group (settings `optimizer`, default Adam, with `lr` and `weight_decay`); a trainable may
    set `optimizer_settings = {group: {"lr": .., ...}}`. fused: use the fused kernel where FUSED has one."""
    overrides = getattr(trainable, "optimizer_settings", {})
    name = settings.get("optimizer", "adam")
    optimizer = OPTIMIZERS[name]
    optimizers = {}
    io = io_parameters(trainable)  # the input and output layers, which Muon leaves to Adam
    for group, params in trainable.parameter_groups().items():
        use_fused = fused and name in FUSED and all(param.device.type in ("cpu", "cuda") for param in params)
        options = {"lr": settings["lr"], "weight_decay": settings.get("weight_decay", 0.0),
                   **({"fused": True} if use_fused else {}),
                   **({"matrix_lr": settings["matrix_lr"]} if name == "muon" and "matrix_lr" in settings else {}),
                   **({"io_parameters": io} if name == "muon" else {}),
                   **overrides.get(group, {})}
        optimizers[group] = optimizer(params, **options)
    return optimizers


class _CsvLog:
    """Per-step logs in `<output stem>.log.csv` (step, epoch, one column per log key), written on rank 0.

    The rows also travel in the resume state, so a resumed job rewrites the file complete from step 1 even when a
    runner deleted it, and without the rows an interrupted run logged after the checkpoint.
    """

    def __init__(self, path: Path, curve: dict[str, Any] | None):
        self.path = path
        self.columns: list[str] | None = None
        self.rows: list[list[Any]] = []
        if curve is not None and curve.get("columns"):
            self.columns, self.rows = list(curve["columns"]), [list(row) for row in curve["rows"]]
        self._rewrite()

    def _rewrite(self) -> None:
        if self.columns is None:
            self.path.unlink(missing_ok=True)
            return
        with atomic_path(self.path) as temporary, temporary.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(self.columns)
            writer.writerows(self.rows)

    def state(self) -> dict[str, Any]:
        return {"columns": self.columns or [], "rows": [list(row) for row in self.rows]}

    def write(self, step: int, epoch: int, logs: dict[str, float]) -> None:
        new_file = self.columns is None
        if new_file:
            self.columns = ["step", "epoch", *logs]
        values = {"step": step, "epoch": epoch, **logs}
        row = [values.get(column, "") for column in self.columns]
        self.rows.append(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new_file:
                writer.writerow(self.columns)
            writer.writerow(row)


def _batches(count: int, batch_size: int, seed: int, epoch: int) -> Iterator[torch.Tensor]:
    """Shuffled index batches; the remainder is dropped (batch norm needs full batches), but never everything."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed + epoch))
    size = min(batch_size, count)
    for start in range(0, count - size + 1, size):
        yield order[start: start + size]


def steps_per_epoch(count: int, batch_size: int) -> int:
    return count // min(batch_size, count)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _model_configs(*modules: nn.Module | None) -> list[Any]:
    """Every `config` dict in the module trees (a LapCVAE's levels, widths, kl_weights...), each module once."""
    configs, seen = [], set()
    for root in modules:
        for module in root.modules() if root is not None else ():
            config = getattr(module, "config", None)
            if id(module) not in seen and isinstance(config, dict):
                configs.append([type(module).__name__, config])
            seen.add(id(module))
    return configs


def _fixed_weights_digest(trainable: nn.Module, groups: dict[str, list[nn.Parameter]]) -> str:
    """Shapes of every tensor, and the content of all but the trained parameters (the frozen coarser levels a
    LapCVAE level is built on, buffers): other coarser weights or other shapes give another digest."""
    trained = {id(param) for params in groups.values() for param in params}
    digest = hashlib.sha256()
    for name, tensor in trainable.state_dict(keep_vars=True).items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype};".encode())
        if id(tensor) not in trained:
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _data_digest(images: np.ndarray, chunk: int = 1024) -> str:
    """sha256 of the images' bytes, read `chunk` images at a time (a memmap never sits in memory whole)."""
    digest = hashlib.sha256()
    for start in range(0, len(images), chunk):
        digest.update(read_rows(images, np.arange(start, min(start + chunk, len(images)))).data)
    return digest.hexdigest()[:16]


def _fingerprint(
    settings: dict[str, Any], seed: int, name: str, groups: dict[str, list[nn.Parameter]], images: np.ndarray,
    world: int, trainable: nn.Module, export: nn.Module | None,
) -> dict[str, str]:
    """What a resume file must share with the run that continues it, one digest per part (named when they differ)."""
    return {
        "settings": _digest({"settings": settings, "seed": seed, "name": name, "groups": list(groups),
                             "world_size": world}),
        "model config": _digest(_model_configs(trainable, export)),
        "fixed weights": _fixed_weights_digest(trainable, groups),
        "data": _digest([list(images.shape), _data_digest(images)]),
    }


def _load_resume(path: Path, fingerprint: dict[str, str], device: torch.device) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # a foreign or truncated file: start over rather than fail
        logger.warning("starting over: ignoring unreadable resume checkpoint %s (%s)", path, error)
        return None
    made_by = state.get("fingerprint") if isinstance(state, dict) else None
    if made_by != fingerprint:
        differing = [part for part in fingerprint
                     if not isinstance(made_by, dict) or made_by.get(part) != fingerprint[part]] or ["format"]
        logger.warning("starting over: resume checkpoint %s was made by another run (its %s differ)", path,
                       ", ".join(differing))
        return None
    return state


def fit(
    trainable: nn.Module, train_images: np.ndarray, *, settings: dict[str, Any], seed: int, output: str | Path,
    export: nn.Module | None = None, device: str = "auto", name: str = "",
    validate: Callable[[], dict[str, float]] | None = None, validate_every: int = 0,
) -> dict[str, Any]:
    """Train `trainable` (a models.interface.Trainable nn.Module) and save `export or trainable` to `output`.

    train_images: uint8 (N, 3, H, W), possibly a memmap; settings: core.params.train_settings(...).
    Resumes from `<output>.resume.pt` if an earlier run of the same job (settings, model configuration, fixed
    weights, data) was interrupted; logs every `log_every` steps to `<output stem>.log.csv`. Returns the metadata
    stored in the checkpoint.

    validate: called (trainable in eval mode, no autocast) before the first step, every `validate_every` steps
    (0: at epoch ends only) and at the end; its values go to `<output stem>.val.csv` with the step, epoch, train
    seconds and images seen so far (the time validation takes is not counted as training time).
    """
    _check_inputs(trainable, train_images, settings)
    settings = {**OPTIONAL_SETTINGS, **settings}
    output = Path(output)
    resume_path = output.with_name(output.name + ".resume.pt")
    ranks = _Distributed(device)
    guards = contextlib.ExitStack()
    device_ = ranks.device
    label = name or output.stem
    channels_last = uses_channels_last(trainable)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    try:
        if ranks.main:  # one job per output: a second would share the resume state and interleave the curve's rows
            guards.enter_context(exclusive_writer(output))
        trainable.to(device_)
        ranks.broadcast_state(trainable)
        optimizers = make_optimizers(trainable, settings)
        # Before a resume state overwrites them with the scheduled rates of its last step.
        base_rates = {group: [{key: options[key] for key in SCHEDULED_RATES if key in options}
                              for options in optimizer.param_groups] for group, optimizer in optimizers.items()}
        groups = {group: list(params) for group, params in trainable.parameter_groups().items()}
        fingerprint = _fingerprint(settings, seed, label, groups, train_images, ranks.world_size, trainable, export)
        state = _load_resume(resume_path, fingerprint, device_)
        start_epoch, step, train_seconds = 0, 0, 0.0
        if state is not None:
            trainable.load_state_dict(state["model"])
            for group, optimizer in optimizers.items():
                optimizer.load_state_dict(state["optimizers"][group])
            start_epoch, step, train_seconds = state["epoch"], state["step"], state["train_seconds"]
            logger.info("%s: resuming from %s at epoch %d (step %d)", label, resume_path, start_epoch, step)
        log = _CsvLog(output.with_name(output.stem + ".log.csv"), state.get("curve") if state else None) \
            if ranks.main else None
        val_log = _CsvLog(output.with_name(output.stem + ".val.csv"), state.get("val_curve") if state else None) \
            if ranks.main and validate is not None else None
        # After loading: load_state_dict copies values into whatever layout the parameters have.
        trainable.to(memory_format=memory_format)

        # Read a batch at a time from the (memory-mapped) array: peak memory does not grow with the data set.
        images = train_images  # (N, 3, H, W) uint8
        batch_size, epochs = settings["batch_size"], settings["epochs"]
        if min(batch_size, len(images)) < ranks.world_size:
            raise ValueError(f"batch_size {batch_size} is smaller than the {ranks.world_size} processes; raise it")
        per_epoch = steps_per_epoch(len(images), batch_size)
        dtype = autocast_dtype(device_, bool(settings["bf16"]))
        logger.info("%s: %s on %s, %s%s", label, "bf16 autocast" if dtype else "fp32", device_,
                    "channels-last" if channels_last else "contiguous",
                    "" if dtype or not settings["bf16"] or device_.type != "cpu"
                    else " (train.bf16 is set, but this CPU has no native bf16: fp32 is faster here)")
        training_step = torch.compile(trainable.training_step) if settings["compile"] else trainable.training_step
        # train.kl_warmup acts on trainables with a `kl_scale` (models/interface.py); others have no KL term to warm.
        anneals_kl = settings["kl_warmup"] > 0 and hasattr(trainable, "kl_scale")
        if anneals_kl:
            logger.info("%s: KL terms warmed up over the first %.0f%% of the steps", label,
                        100 * settings["kl_warmup"])
        guard = _FiniteGuard(list(groups), device_, per_epoch, label)
        progress = progress_bar(total=epochs * per_epoch, initial=step, desc=label, unit="step",
                                disable=not ranks.main, dynamic_ncols=True)

        def run_validation(epoch: int, seconds: float) -> float:
            """Validate (rank 0), log, and return the seconds it took, which are not training time."""
            if val_log is None:
                return 0.0
            started = time.perf_counter()
            trainable.eval()
            with torch.no_grad():
                values = validate()
            trainable.train()
            val_log.write(step, epoch, {"train_seconds": seconds, "images_seen": step * min(batch_size, len(images)),
                                        **{key: float(value) for key, value in values.items()}})
            return time.perf_counter() - started

        trainable.train()
        if state is None:
            run_validation(0, 0.0)
        for epoch in range(start_epoch, epochs):
            torch.manual_seed(derive_seed(seed, "noise", epoch, ranks.rank))
            epoch_start = time.perf_counter()
            validation_seconds = 0.0
            for indices in _batches(len(images), batch_size, seed, epoch):
                shard = indices[ranks.rank:: ranks.world_size].numpy()  # each rank a shard of every batch
                batch = torch.from_numpy(read_rows(images, shard)).to(device_).float().div_(255.0)  # (b, 3, H, W)
                batch = batch.contiguous(memory_format=memory_format)
                if anneals_kl:
                    trainable.kl_scale = kl_factor(settings["kl_warmup"], step, epochs * per_epoch)
                with torch.autocast(device_.type, dtype=dtype) if dtype else contextlib.nullcontext():
                    result = training_step(batch)
                factor = lr_factor(settings["schedule"], step, epochs * per_epoch)
                for group, optimizer in optimizers.items():
                    for options, bases in zip(optimizer.param_groups, base_rates[group], strict=True):
                        options.update({key: base * factor for key, base in bases.items()})
                _update(result.objectives, groups, optimizers, settings, ranks, step, label, guard)
                _sync_buffers(trainable, ranks)
                step += 1
                progress.update(1)
                if step % settings["log_every"] == 0:
                    guard.check(ranks, step, resume_path)  # the one host sync of the loop
                    if ranks.main:
                        values = {key: float(value) for key, value in result.logs.items()}
                        log.write(step, epoch, values)
                        progress.set_postfix({key: f"{value:.4g}" for key, value in values.items()})
                if validate_every and step % validate_every == 0 and step % per_epoch:
                    elapsed = train_seconds + time.perf_counter() - epoch_start - validation_seconds
                    validation_seconds += run_validation(epoch, elapsed)
            guard.check(ranks, step, resume_path)  # never save weights a non-finite loss has touched
            train_seconds += time.perf_counter() - epoch_start - validation_seconds
            run_validation(epoch, train_seconds)  # every epoch end, outside the timed epoch
            if ranks.main:
                atomic_save({"fingerprint": fingerprint, "model": trainable.state_dict(),
                             "optimizers": {group: opt.state_dict() for group, opt in optimizers.items()},
                             "epoch": epoch + 1, "step": step, "train_seconds": train_seconds,
                             "curve": log.state(),
                             **({"val_curve": val_log.state()} if val_log is not None else {})}, resume_path)
        progress.close()
        trainable.to(memory_format=torch.contiguous_format)  # hand back (and save) the usual layout
        meta = {"name": label, "train_seconds": train_seconds, "steps": step, "epochs": epochs, "seed": seed,
                "world_size": ranks.world_size, "settings": dict(settings), **hardware_info(device_),
                "precision": "bf16" if dtype else "fp32"}
        exported = export if export is not None else trainable
        bad = first_non_finite(exported.state_dict())  # the last update is checked too, not only the losses
        if bad is not None:
            raise NonFiniteLossError(f"{label}: training ended with {bad[1]} non-finite values in {bad[0]}; nothing "
                                     f"was written to {output}. Lower the learning rate or set train.grad_clip and "
                                     "rerun")
        if ranks.main:
            save_model(output, exported, meta)
            resume_path.unlink(missing_ok=True)
            logger.info("%s: %d steps in %.1f s -> %s", label, step, train_seconds, output)
        ranks.barrier()
        return meta
    finally:
        if hasattr(trainable, "kl_scale"):
            trainable.kl_scale = 1.0  # full KL weight again, also after a stopped or failed run
        guards.close()
        ranks.close()


class _FiniteGuard:
    """Tracks on the device whether each objective stayed finite; `check` reads it back (one sync) and stops.

    Since the last check the first non-finite step and its value are kept per group with torch.where, so the
    error names the exact step without copying any loss to the host on the steps in between.
    """

    def __init__(self, names: list[str], device: torch.device, per_epoch: int, label: str):
        self.names, self.per_epoch, self.label = names, per_epoch, label
        self.first_bad = torch.full((len(names),), -1, dtype=torch.long, device=device)  # (G,) step or -1
        self.bad_value = torch.zeros(len(names), dtype=torch.float32, device=device)  # (G,)
        self.checked_step = 0

    def record(self, step: int, values: list[torch.Tensor | None]) -> None:
        for index, value in enumerate(values):
            if value is None:
                continue
            value = value.detach().float().reshape(())
            new = (self.first_bad[index] < 0) & ~torch.isfinite(value)
            self.first_bad[index] = torch.where(new, step, self.first_bad[index])
            self.bad_value[index] = torch.where(new, value, self.bad_value[index])

    def check(self, ranks: _Distributed, step: int, resume_path: Path) -> None:
        # Every rank checks at the same steps; a step that is bad on any rank stops all of them.
        bad = (self.first_bad >= 0).float()
        agreed = ranks.all_min((1.0 - bad).to(ranks.comm_device)).cpu()  # (G,) 1 where finite on every rank
        first_bad, bad_value = self.first_bad.tolist(), self.bad_value.tolist()
        checked, self.checked_step = self.checked_step, step
        for index, group in enumerate(self.names):
            if agreed[index] >= 1:
                continue
            at = first_bad[index]
            where = f"at step {at} (epoch {at // self.per_epoch})" if at >= 0 else \
                f"on another process between steps {checked} and {step}"
            kept = _set_aside(resume_path) if ranks.main else None
            raise NonFiniteLossError(
                f"{self.label}: objective {group!r} is {bad_value[index] if at >= 0 else float('nan')} {where}, "
                f"found when checking steps {checked}-{step}. "
                + (f"The last good weights (end of the last finished epoch) are kept in {kept} for inspection; "
                   "they will not be resumed, since an unchanged rerun would meet the same loss. "
                   if kept else "No epoch finished, so no weights were kept. ")
                + "Lower the learning rate or set train.grad_clip and rerun: training starts over from step 0."
            )


def _set_aside(resume_path: Path) -> Path | None:
    """Rename the resume file so no rerun resumes into the same non-finite loss; keep it for inspection."""
    if not resume_path.exists():
        return None
    kept = resume_path.with_name(resume_path.name.removesuffix(".resume.pt") + ".nonfinite")
    resume_path.replace(kept)  # a move of a finished file, not a write
    return kept


def _update(
    objectives: dict[str, torch.Tensor | None], groups: dict[str, list[nn.Parameter]],
    optimizers: dict[str, Optimizer], settings: dict[str, Any], ranks: _Distributed,
    step: int, label: str, guard: _FiniteGuard,
) -> None:
    """Route each objective's gradient to its own group only, average over ranks, step that group's optimizer.

    Why not DistributedDataParallel: DDP reduces whatever one backward() left in .grad, but here several
    objectives each update their own group from one shared graph (VAE/GAN), via torch.autograd.grad; so the
    gradients are averaged with one all_reduce per group, and with several processes the ranks agree first
    (one MIN all_reduce) on which groups update this step. Finiteness is recorded on the device (`guard`).
    """
    names = list(groups)
    unknown = set(objectives) - set(names)
    if unknown:
        raise ValueError(f"{label}: training_step returned objectives {sorted(unknown)} with no parameter group")
    active = [objectives.get(group) is not None for group in names]
    guard.record(step, [objectives.get(group) for group in names])
    if ranks.enabled:
        agreed = ranks.all_min(torch.tensor(active, dtype=torch.float32).to(ranks.comm_device)).cpu()
        active = [bool(flag >= 1) for flag in agreed]
    updating = [group for flag, group in zip(active, names, strict=True) if flag]
    set_gradients(objectives, groups, updating)
    for group in updating:
        params = groups[group]
        ranks.average([param.grad for param in params if param.grad is not None])
        if settings["grad_clip"] is not None:
            nn.utils.clip_grad_norm_(params, settings["grad_clip"])
        optimizers[group].step()
        for param in params:
            param.grad = None


def set_gradients(objectives: Mapping[str, torch.Tensor | None], groups: Mapping[str, list[nn.Parameter]],
                  updating: list[str]) -> None:
    """Each updating group's .grad from its own objective only. Groups that share one objective tensor (VAE/GAN's
    encoder and decoder) get their gradients from one backward pass."""
    passes: dict[int, list[str]] = {}
    for group in updating:
        passes.setdefault(id(objectives[group]), []).append(group)
    for position, sharing in enumerate(passes.values()):
        params = [param for group in sharing for param in groups[group]]
        grads = torch.autograd.grad(objectives[sharing[0]], params, retain_graph=position < len(passes) - 1,
                                    allow_unused=True)
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad  # None where the objective does not reach a parameter (the same on every rank)


def _sync_buffers(trainable: nn.Module, ranks: _Distributed) -> None:
    """Average floating buffers (batch-norm running statistics) so every rank holds the same model."""
    if ranks.enabled:
        ranks.average([buffer for buffer in trainable.buffers() if buffer.is_floating_point()])
