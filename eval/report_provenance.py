"""The report's provenance section: git commit, hardware, training and evaluation time, data manifest, params."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

from core import registry
from core.device import cpu_has_native_bf16
from core.params import REPO_ROOT
from eval.plotting import MODELS
from eval.report_blocks import (
    MISSING,
    Block,
    Bullets,
    Heading,
    Paragraph,
    Preformatted,
    Table,
    display,
    number,
    read_json,
)


def git_commit() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def hardware() -> list[str]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    # train.bf16 autocasts only where bf16 is native, and the precision moves the numbers a little; the training
    # table names what each model's jobs actually used.
    bf16 = "native" if cpu_has_native_bf16() else "emulated"
    return [f"CPU: {cpu_name()} ({os.cpu_count()} logical cores), bf16 {bf16}", f"GPU: {gpu}",
            f"torch {torch.__version__}, Python {platform.python_version()}, {platform.platform()}"]


def training_time_table(eval_dir: Path, resolutions: Sequence[int],
                        params: Mapping[str, Any] | None = None) -> Table:
    """params: show only the models that run at each resolution (core/registry.py models_at), not stale files."""
    rows = []
    for res in resolutions:
        for model in (MODELS if params is None else registry.models_at(params, res)):
            path = eval_dir / str(res) / model / "summary.json"
            if not path.is_file():
                continue
            summary = read_json(path, f"rerun `lapcvae evaluate` for {model}")
            meta = summary.get("meta") or {}
            rows.append([f"{res}x{res}", display(model), number(summary.get("train_seconds"), 1),
                         str(meta.get("device", MISSING)), str(meta.get("precision", MISSING)),
                         str(meta.get("steps", MISSING)),
                         number(summary.get("eval_seconds"), 1), str(summary.get("eval_device", MISSING))])
    return Table(["Resolution", "Model", "Training (s)", "Training device", "Precision", "Steps", "Evaluation (s)",
                  "Evaluation device"], rows, "Training and evaluation time per model (from summary.json).")


def provenance_section(params: Mapping[str, Any], results: Path, prepared: Path) -> list[Block]:
    resolutions = params["data"]["resolutions"]
    blocks: list[Block] = [Heading(2, "Provenance"), Bullets([f"git commit: {git_commit()}", *hardware()]),
                           training_time_table(results / "eval", resolutions, params), Heading(3, "Data manifest")]
    manifest = prepared / "manifest.json"
    if manifest.is_file():
        blocks.append(Preformatted(json.dumps(read_json(manifest, "rerun `lapcvae prepare`"), indent=2)))
    else:
        blocks.append(Paragraph(f"No {manifest} (run `lapcvae prepare`).", note=True))
    blocks += [Heading(3, "Parameters (merged)"), Preformatted(yaml.safe_dump(dict(params), sort_keys=False))]
    return blocks
