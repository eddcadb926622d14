"""Test-wide settings, and the smoke-scale study that the end-to-end tests share (run once per session).

The whole DAG at smoke scale costs minutes on 2 cores (about 85 jobs, each starting Python and torch), so the
slow tests share one study instead of each making their own:
- `smoke_run`: `snakemake --cores 2` in a copy of the repository, killed (SIGKILL, whole process group) in the
  middle of training and then run again with the same command, to completion. The kill-and-resume test checks
  what the kill left and the resumed weights; the adding-a-model test starts its copy from this study's files.
- `smoke_dvc_repro`: `dvc repro` of the training stages (DVC_TRAINING_STAGES) right after, in a copy of that
  finished study, beside the tests that read `smoke_run`. The training stages are where DVC redoing Snakemake's
  work would cost; every stage runs the same command wrapper, and `workflow.dvc_check` holds every stage's deps and
  outs equal to the Snakemake DAG (tests/test_dvc.py), so the other stages' Snakemake starts (about 3 s each, one
  after another) would add minutes and no check.
The study starts in the background when the session starts (`_studies_in_background`), and the tests that read it
run last (`pytest_collection_modifyitems`): the other tests, one thread each, run on the cores the study's
mostly one-thread jobs leave free, instead of waiting for it or leaving a core idle. DVC's run from scratch is a
test of its own on one light branch (tests/test_end_to_end.py): DVC's stage commands are the Snakemake targets the
whole study runs, so building all of them from scratch again would only repeat Snakemake's work.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from core.params import deep_merge, load_params
from core.registry import level_checkpoint
from workflow.pipeline import levels, training_checkpoints

# The tests train tiny models: one thread avoids oversubscribing small CPUs (30x faster on 2 busy cores).
torch.set_num_threads(1)
# The commands the tests start (hundreds of `lapcvae` jobs, Snakemake and DVC, many in fresh copies of the
# repository) compile each module once and reuse the bytecode, as in a default environment, instead of at every start.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
CORES = "2"  # the machine `make test` is sized for


def with_random_band_outputs(model: torch.nn.Module) -> torch.nn.Module:
    """Random output layers for a LapCVAE's band decoders, as after training: untrained ones predict no detail
    whatever their latent (models.blocks.ConvDecoder's output_bias), which hides what tiny-model tests check."""
    for level in model.level_vaes.values():
        torch.nn.init.normal_(level.decoder.to_image.weight, std=0.1)
    return model


def run_command(*command: str, cwd: Path, timeout: int = 1800, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


def dry_run_job_counts(*arguments: str) -> dict[str, int]:
    """{rule: jobs} of the 'Job stats' table of `snakemake -n --forceall <arguments>` in the repository."""
    output = run_command("snakemake", "-n", "--forceall", *arguments, cwd=REPO, timeout=300)
    table = output.split("Job stats:")[1]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)}


def copy_repository(destination: Path) -> Path:
    """The repository's files as git sees them (tracked and untracked, not ignored), in a fresh git repository."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    run_command("git", "init", "-q", cwd=destination)
    return destination


def smoke_params(overrides: dict | None = None) -> dict:
    """The smoke params (config/smoke.yaml over params.yaml), with `overrides` merged over them."""
    return deep_merge(load_params("config/smoke.yaml"), overrides or {})


def smoke_copy(destination: Path, overrides: dict | None = None) -> Path:
    """A copy of the repository with the smoke params (and `overrides`) written into params.yaml."""
    copy_repository(destination)
    (destination / "params.yaml").write_text(yaml.safe_dump(smoke_params(overrides), sort_keys=False))
    return destination


def checkpoint_hashes(root: Path, params: dict) -> dict[str, str]:
    """SHA-256 of every training checkpoint of the study in `root` (a retrained one differs: it records its time)."""
    return {path: hashlib.sha256((root / path).read_bytes()).hexdigest() for path in training_checkpoints(params)}


CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Marks of a test that drives Debian's Chromium: skipped, saying how to install it, where it is absent.
NEEDS_CHROMIUM = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason=f"{CHROMIUM} or {CHROMEDRIVER} is absent: apt-get install -y chromium chromium-driver"),
]


@contextlib.contextmanager
def headless_chromium(profile: Path, width: int, height: int, downloads: Path | None = None) -> Iterator[Any]:
    """A selenium driver of headless Chromium with a `width` x `height` window, offline, its profile in `profile`;
    files it downloads land in `downloads` when given."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        if downloads is not None:
            driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        yield driver
    finally:
        driver.quit()


# `dvc repro`'s targets over Snakemake's finished study: every resolution's training stage (their upstream, the
# data's two stages, come with them).
DVC_TRAINING_STAGES = [f"train@{res}" for res in smoke_params()["data"]["resolutions"]]


@dataclass
class SmokeRun:
    """A smoke study Snakemake built after a SIGKILL in the middle of training, and what the kill left."""

    root: Path
    report_before_rerun: bool  # the report existed when the kill came (the run finished too early to test)
    locks_after_kill: int  # Snakemake lock files the killed run left
    rerun_output: str  # what the same command printed the second time
    trained_after_kill: list[str]  # the training checkpoints that were not written when the kill came


@dataclass
class SmokeDvcRepro:
    """`dvc repro` of the training stages right after Snakemake's study, in a copy of it (tests/test_end_to_end.py
    checks that it trains nothing again): what it printed, and the SHA-256 of each training checkpoint before and
    after it."""

    root: Path
    output: str
    checkpoints_before: dict[str, str]
    checkpoints_after: dict[str, str]


class _SmokeStart:
    """The Snakemake study being built by a background thread (`result` once done), then, if `with_dvc`, `dvc repro`
    in a copy of it (`dvc_result`); `process` is the current command, killed with its jobs if the session ends."""

    def __init__(self, root: Path, *, with_dvc: bool) -> None:
        self.root, self.with_dvc, self.process, self.stopped = root, with_dvc, None, False
        self.result: Future[SmokeRun] = Future()
        self.dvc_result: Future[SmokeDvcRepro] = Future()
        threading.Thread(target=self._build, daemon=True).start()

    def _start(self, *command: str, cwd: Path | None = None, **kwargs) -> subprocess.Popen:
        if self.stopped:
            raise RuntimeError("the test session ended before the smoke study was built")
        self.process = subprocess.Popen(command, cwd=cwd or self.root, env=ENV, start_new_session=True, **kwargs)
        return self.process

    def _output(self, *command: str, cwd: Path | None = None) -> str:
        """What `command` printed (stdout and stderr); it must succeed."""
        process = self._start(*command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            output, _ = process.communicate(timeout=2700)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        assert process.returncode == 0, f"{' '.join(command)}:\n{output[-8000:]}"
        return output

    def _build(self) -> None:
        try:
            study = self._run()
            # The copy is taken before any test can read (or dry-run in) the study.
            copy = self.root.with_name(f"{self.root.name}-dvc")
            if self.with_dvc:
                shutil.copytree(self.root, copy, symlinks=True)
        except BaseException as error:  # handed to the tests that read the study
            self.result.set_exception(error)
            self.dvc_result.set_exception(error)
            return
        self.result.set_result(study)
        if not self.with_dvc:
            return
        try:
            self.dvc_result.set_result(self._dvc_repro(copy))
        except BaseException as error:
            self.dvc_result.set_exception(error)

    def _run(self) -> SmokeRun:
        root = self.root
        process = self._start("snakemake", "--cores", CORES, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        params = smoke_params()  # two LapCVAE levels trained (of at least 3), more to come
        first_levels = root / level_checkpoint(params["paths"]["results"], 64, "lapcvae", levels(params, 64) - 2)
        deadline = time.monotonic() + 900
        while not first_levels.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        os.killpg(process.pid, signal.SIGKILL)  # the whole Snakemake process group, jobs included
        process.wait()
        report_before_rerun = (root / "results/report.html").exists()
        locks = len(list((root / ".snakemake/locks").glob("*.lock")))
        unwritten = [path for path in training_checkpoints(params) if not (root / path).exists()]
        # As a user would: the same command again, no `--unlock` (the killed run's lock is removed as stale).
        rerun_output = self._output("snakemake", "--cores", CORES)
        return SmokeRun(root, report_before_rerun, locks, rerun_output, unwritten)

    def _dvc_repro(self, copy: Path) -> SmokeDvcRepro:
        """DVC's first run in the copy of the finished study (copytree keeps modification times)."""
        params = smoke_params()
        before = checkpoint_hashes(copy, params)
        output = self._output("dvc", "repro", *DVC_TRAINING_STAGES, cwd=copy)
        return SmokeDvcRepro(copy, output, before, checkpoint_hashes(copy, params))

    def stop(self) -> None:
        self.stopped = True
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def smoke_start(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """The smoke study by `snakemake --cores 2`, killed mid-training and run again, building in the background
    (then `dvc repro` in a copy, if a selected test reads it)."""
    with_dvc = any("smoke_dvc_repro" in item.fixturenames for item in request.session.items)
    started = _SmokeStart(smoke_copy(tmp_path_factory.mktemp("snakemake")), with_dvc=with_dvc)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def smoke_run(smoke_start: _SmokeStart) -> SmokeRun:
    """The smoke study built by `snakemake --cores 2`, killed mid-training and run again to completion."""
    return smoke_start.result.result(timeout=3600)


@pytest.fixture(scope="session")
def smoke_dvc_repro(smoke_start: _SmokeStart) -> SmokeDvcRepro:
    """`dvc repro` right after the smoke study, in a copy of it."""
    return smoke_start.dvc_result.result(timeout=3600)


# The shared studies, the fixtures that start them in the background, and the order the tests that read them run
# in: last, when each is ready (Snakemake's study first; `dvc repro` after it, in its copy, runs beside the tests
# that read it).
STUDIES = {"smoke_run": "smoke_start", "smoke_dvc_repro": "smoke_start"}
READ_ORDER = {"smoke_run": 1, "smoke_dvc_repro": 2}


def _read_order(item: pytest.Item) -> int:
    """0 for a test that reads no shared study, else the latest READ_ORDER of the studies it reads."""
    return max((READ_ORDER[name] for name in STUDIES if name in item.fixturenames), default=0)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that read the shared studies last, in READ_ORDER: meanwhile the other tests run beside the
    studies' jobs (sorted is stable: file order otherwise)."""
    items[:] = sorted(items, key=_read_order)


@pytest.fixture(scope="session", autouse=True)
def _studies_in_background(request: pytest.FixtureRequest) -> None:
    """Start the shared studies the selected tests read, in the background, when the session starts."""
    used = {name for item in request.session.items for name in item.fixturenames}
    for start in dict.fromkeys(start for study, start in STUDIES.items() if study in used):
        request.getfixturevalue(start)
