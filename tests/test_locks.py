"""One run per working folder across Snakemake, DVC and the commands; temporaries that name their writer, cleaned
by the next run only when that writer is gone; one writer per output. Holders and writers are sleeping child
processes (no training); the Snakemake and DVC runs use a one-rule Snakefile or the smoke params."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import test_reliability
import torch

from baselines.vae import VAE
from core.atomic import (
    RUN_ID_VARIABLE,
    WriterBusyError,
    atomic_directory,
    atomic_path,
    exclusive_writer,
    host_name,
    remove_leftovers,
    temporary_path,
    temporary_writer,
    write_text,
)
from models import checkpoint
from training.loop import fit
from workflow import cli, locks
from workflow.dvc_stage import dvc_forced, forced_jobs

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(REPO)}
ENV.pop(RUN_ID_VARIABLE, None)
ENV.pop("DVC_STAGE", None)
smoke_repo = test_reliability.smoke_repo  # the repository with the smoke params, as a fixture


def sleeper(cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(["sleep", "300"], cwd=cwd, env=env)


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait()


def python_child(code: str, cwd: Path, **popen) -> subprocess.Popen:
    """A Python child that runs `code`, prints `ready` when set up, then sleeps until killed."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=ENV, text=True,
                            stdout=subprocess.PIPE, **popen)


def wait_ready(process: subprocess.Popen) -> None:
    assert process.stdout.readline().strip() == "ready", "the child did not get ready"


def project(tmp_path: Path) -> Path:
    """A working folder as the commands see one: it holds a Snakefile."""
    (tmp_path / "Snakefile").write_text("rule all:\n    input: []\n")
    return tmp_path


def wait_gone(pid: int, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


# ----- the run lock ---------------------------------------------------------------------------------------------
def test_a_second_run_is_refused_naming_the_live_one(tmp_path):
    holder_process = sleeper(tmp_path)
    try:
        holder, taken = locks.acquire_run_lock(tmp_path, holder_pid=holder_process.pid, command="snakemake --cores 2")
        assert taken
        with pytest.raises(locks.RunLockedError) as refused:
            locks.acquire_run_lock(tmp_path)
        message = str(refused.value)
        assert f"pid {holder_process.pid} on {host_name()}" in message and "`snakemake --cores 2`" in message
        assert f"started {holder.started}" in message and f"kill {holder_process.pid}" in message
        with pytest.raises(locks.RunLockedError):
            locks.unlock(tmp_path)  # `snakemake --unlock` does not remove a live run's lock either
        assert locks.read_holder(tmp_path) == holder
    finally:
        stop(holder_process)


def test_a_stale_lock_is_taken_over_with_a_logged_line(tmp_path, caplog):
    gone = sleeper(tmp_path)
    old, _ = locks.acquire_run_lock(tmp_path, holder_pid=gone.pid, command="snakemake --cores 2")
    stop(gone)
    with caplog.at_level(logging.WARNING, logger="workflow.locks"):
        new, taken = locks.acquire_run_lock(tmp_path)
    assert taken and new.pid == os.getpid() and new.run_id != old.run_id
    assert f"taking over the run lock {tmp_path / locks.RUN_LOCK}" in caplog.text and f"pid {gone.pid}" in caplog.text
    locks.release_run_lock(tmp_path, new)
    assert locks.read_holder(tmp_path) is None


def test_a_lock_is_live_while_jobs_of_its_run_still_write(tmp_path):
    """Snakemake killed alone: its pid is gone, its jobs (carrying the run id) still run."""
    gone = sleeper(tmp_path)
    holder, _ = locks.acquire_run_lock(tmp_path, holder_pid=gone.pid, command="snakemake --cores 2")
    stop(gone)
    job = sleeper(tmp_path, {**ENV, RUN_ID_VARIABLE: holder.run_id})
    try:
        with pytest.raises(locks.RunLockedError, match=f"pid {gone.pid}"):
            locks.acquire_run_lock(tmp_path)
    finally:
        stop(job)
    assert locks.acquire_run_lock(tmp_path)[1]


def test_another_hosts_lock_is_never_removed_silently(tmp_path):
    lock = tmp_path / locks.RUN_LOCK
    write_text(lock, json.dumps({"host": "other-machine", "pid": 12345, "run_id": "abc", "command": "snakemake",
                                 "started": "2000-01-01T00:00:00"}))
    before = lock.read_text()
    with pytest.raises(locks.RunLockedError) as refused:
        locks.acquire_run_lock(tmp_path)
    assert "other-machine" in str(refused.value) and "snakemake --unlock" in str(refused.value)
    assert "python -m workflow.locks unlock" in str(refused.value)
    assert lock.read_text() == before
    locks.main(["unlock", str(tmp_path)])  # what the message tells the person to run once that run is over
    assert not lock.exists()


def test_processes_of_the_holding_run_pass(tmp_path, monkeypatch):
    """Jobs (by the run id Snakemake exports) and children of the holder (e.g. a command's worker) join it."""
    holder_process = sleeper(tmp_path)
    try:
        holder, _ = locks.acquire_run_lock(tmp_path, holder_pid=holder_process.pid)
        monkeypatch.setenv(RUN_ID_VARIABLE, holder.run_id)
        assert locks.acquire_run_lock(tmp_path) == (holder, False)
    finally:
        stop(holder_process)
    monkeypatch.delenv(RUN_ID_VARIABLE)
    own, _ = locks.acquire_run_lock(tmp_path, holder_pid=os.getpid())
    child = subprocess.run([sys.executable, "-c", "import sys; from workflow.locks import acquire_run_lock; "
                            "print(acquire_run_lock(sys.argv[1])[1])", str(tmp_path)],
                           env=ENV, capture_output=True, text=True, timeout=120)
    assert child.stdout.strip() == "False", child.stderr[-2000:]
    assert locks.read_holder(tmp_path) == own


def test_a_command_writing_into_a_locked_project_is_refused(tmp_path):
    root = project(tmp_path)
    ckpt = tmp_path / "vae.pt"
    checkpoint.save_model(ckpt, VAE(resolution=16, latent_dim=4, widths=[4, 8], kl_weight=0.01))
    out = root / "results" / "samples.npy"
    args = ["sample", "--checkpoint", str(ckpt), "--n", "2", "--out", str(out)]
    holder_process = sleeper(root)
    try:
        locks.acquire_run_lock(root, holder_pid=holder_process.pid, command="snakemake --cores all")
        with pytest.raises(SystemExit) as refused:
            cli.main(args)
        message = str(refused.value.code)
        assert "is in use by another run" in message and f"pid {holder_process.pid}" in message
        assert "\n" not in message and not out.exists()
    finally:
        stop(holder_process)
    cli.main(args)  # the holder is gone: the command takes the lock over, writes, and gives the lock back
    assert np.load(out).shape[0] == 2
    assert locks.read_holder(root) is None


def test_command_in_a_project_holds_the_lock_while_it_runs(tmp_path):
    root = project(tmp_path)
    locks.hold_command_lock([root / "docs" / "results.md", None, tmp_path.parent / "elsewhere.csv"], ["results"])
    assert locks.read_holder(root) is None  # outside the project's output roots: no lock
    locks.hold_command_lock([root / "results" / "x.csv"], ["data/prepared", "results"])
    try:
        holder = locks.read_holder(root)
        assert holder is not None and holder.pid == os.getpid()
        second = subprocess.run([sys.executable, "-m", "workflow.locks", "unlock", str(root)], env=ENV,
                                capture_output=True, text=True, timeout=120)
        assert second.returncode != 0 and f"pid {os.getpid()}" in second.stderr
    finally:
        locks.release_command_locks()
    assert locks.read_holder(root) is None


def test_snakemake_is_refused_while_another_run_holds_the_folder(smoke_repo):
    """The project's lock is checked when the Snakefile loads, before Snakemake touches its own lock files (which a
    run deletes when it exits); a dry run goes on with a warning."""
    holder_process = sleeper(smoke_repo)
    snakemake_locks = smoke_repo / ".snakemake" / "locks"
    snakemake_locks.mkdir(parents=True, exist_ok=True)
    (snakemake_locks / "0.output.lock").write_text("data/raw/synthetic\n")
    try:
        holder, _ = locks.acquire_run_lock(smoke_repo, holder_pid=holder_process.pid, command="dvc repro")
        second = subprocess.run(["snakemake", "--cores", "1", "data/raw/synthetic"], cwd=smoke_repo, env=ENV,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode != 0
        assert "is in use by another run" in second.stderr and f"pid {holder_process.pid}" in second.stderr
        assert (snakemake_locks / "0.output.lock").exists() and locks.read_holder(smoke_repo) == holder
        assert not (smoke_repo / "data/raw/synthetic").exists()
        dry = subprocess.run(["snakemake", "-n", "data/raw/synthetic"], cwd=smoke_repo, env=ENV,
                             capture_output=True, text=True, timeout=300)
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert "a dry run goes on" in dry.stderr and locks.read_holder(smoke_repo) == holder
    finally:
        stop(holder_process)
    lock = smoke_repo / locks.RUN_LOCK
    lock.write_text(json.dumps({"host": "other-machine", "pid": 5, "run_id": "abc", "command": "snakemake",
                                "started": "2000-01-01T00:00:00"}))
    unlocked = subprocess.run(["snakemake", "--unlock"], cwd=smoke_repo, env=ENV, capture_output=True, text=True,
                              timeout=300)
    assert unlocked.returncode == 0 and "removed the run lock" in unlocked.stderr and not lock.exists()


def test_a_run_that_takes_the_lock_cleans_dead_writers_leftovers(tmp_path, monkeypatch):
    """What Snakemake's start does as the holder (here through the API's path: the lock is taken at onstart)."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    paths = {key: str(tmp_path / folder) for key, folder in
             (("raw", "data/raw"), ("prepared", "data/prepared"), ("results", "results"))}
    leftovers = [tmp_path / f"data/raw/synthetic.tmp-{dead.pid}",
                 tmp_path / f"data/prepared.tmp-{host_name()}-{dead.pid}-ab12",
                 tmp_path / f"results/models/64/vae/model.pt.tmp-{host_name()}-{dead.pid}-ab12"]
    live = [tmp_path / f"results/models/64/vae/level0.pt.tmp-{host_name()}-{os.getpid()}-cd34",
            tmp_path / f"results/eval/64/vae/summary.json.tmp-other-machine-{dead.pid}-ef56",
            tmp_path / f"data/raw/synthetic/img_align_celeba/000001.jpg.tmp-{dead.pid}"]  # raw images: not walked
    for path in leftovers + live:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("partial")

    class Workflow:
        def onstart(self, function):
            self.start = function

    workflow = Workflow()
    monkeypatch.setenv(RUN_ID_VARIABLE, "")
    locks.hold_run_lock(workflow, paths, workdir=tmp_path)
    assert locks.read_holder(tmp_path) is None  # nothing taken before the run starts
    workflow.start("log")
    holder = locks.read_holder(tmp_path)
    assert holder.pid == os.getpid() and os.environ[RUN_ID_VARIABLE] == holder.run_id
    assert not any(path.exists() for path in leftovers) and all(path.exists() for path in live)
    locks.release_run_lock(tmp_path, holder)


# ----- DVC: the stages' wrapper ---------------------------------------------------------------------------------
@pytest.mark.parametrize("words, forced", [
    (["dvc", "repro", "-f", "-s", "evaluate@64-vae"], True),
    (["/venv/bin/python", "/venv/bin/dvc", "repro", "-fs", "evaluate@64-vae"], True),
    (["python", "-m", "dvc", "exp", "run", "--force"], True),
    (["dvc", "repro", "-s", "evaluate@64-vae"], False),
    (["dvc", "repro"], False),
    (["python", "-m", "pytest", "-f"], False),
])
def test_a_forced_dvc_command_line_is_recognised(words, forced):
    assert dvc_forced(words) is forced


def test_a_forced_stage_forces_its_own_jobs():
    aggregate = {"models_64": ["results/models/64/vae/model.pt", "results/models/64/lapcvae/level0.pt"]}
    assert forced_jobs(["results/eval/64/vae/summary.json"], [], aggregate) == ["results/eval/64/vae/summary.json"]
    assert forced_jobs(["models_64"], [], aggregate) == aggregate["models_64"]
    assert forced_jobs([], ["neighbours"], aggregate) == ["neighbours"]


def tiny_dvc_project(tmp_path: Path) -> Path:
    """A DVC project whose one stage runs a one-rule Snakefile through workflow/dvc_stage.py; the rule counts its
    runs in runs.txt and sleeps when `sleep` exists."""
    (tmp_path / "Snakefile").write_text(textwrap.dedent("""
        rule count:
            output: "out.txt"
            shell: "echo $$ >> runs.txt; if [ -e sleep ]; then sleep 300; fi; cp runs.txt {output}"
    """))
    (tmp_path / "dvc.yaml").write_text(textwrap.dedent("""
        stages:
          count:
            cmd: python -m workflow.dvc_stage --cores all out.txt
            outs:
              - out.txt: {persist: true}
    """))
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=tmp_path, env=ENV, check=True, timeout=120)
    return tmp_path


def test_dvc_repro_forced_recomputes_the_stage(tmp_path):
    root = tiny_dvc_project(tmp_path)
    for command in (["dvc", "repro"], ["dvc", "repro", "-f", "-s", "count"]):
        result = subprocess.run(command, cwd=root, env=ENV, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert len((root / "runs.txt").read_text().split()) == 2


def test_sigterm_to_dvc_repro_stops_its_snakemake_and_jobs(tmp_path):
    root = tiny_dvc_project(tmp_path)
    (root / "sleep").touch()
    dvc = subprocess.Popen(["dvc", "repro"], cwd=root, env=ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    runs = root / "runs.txt"
    deadline = time.monotonic() + 120
    while not (runs.exists() and runs.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.1)
    job_shell = int(runs.read_text().split()[0])  # the job's shell, which sleeps
    dvc.send_signal(signal.SIGTERM)
    dvc.wait(timeout=120)
    assert wait_gone(job_shell), "the stage's job still runs after dvc repro was stopped"
    assert not (root / "out.txt").exists()


def test_the_stage_wrapper_forwards_sigterm_to_the_whole_group(tmp_path):
    code = f"""
        import sys
        from workflow.dvc_stage import supervise
        print("ready", flush=True)
        sys.exit(supervise(["sh", "-c", "sleep 300 & echo $! > {tmp_path}/job; wait"]))
    """
    wrapper = python_child(code, tmp_path)
    wait_ready(wrapper)
    job = tmp_path / "job"
    deadline = time.monotonic() + 120
    while not (job.exists() and job.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    wrapper.send_signal(signal.SIGTERM)
    assert wrapper.wait(timeout=120) == 128 + signal.SIGTERM
    assert wait_gone(int(job.read_text()))


def test_the_stage_wrapper_stops_the_group_when_dvc_is_gone(tmp_path):
    dvc = sleeper(tmp_path)
    job = tmp_path / "job"
    code = f"""
        from workflow.dvc_stage import supervise
        supervise(["sh", "-c", "sleep 300 & echo $! > {job}; wait"], watch_pid={dvc.pid})
    """
    wrapper = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, env=ENV)
    deadline = time.monotonic() + 120
    while not (job.exists() and job.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop(dvc)
    wrapper.wait(timeout=120)
    assert wait_gone(int(job.read_text()))


# ----- temporaries and writers ----------------------------------------------------------------------------------
def test_a_temporary_names_host_pid_and_run(monkeypatch, tmp_path):
    monkeypatch.setenv(RUN_ID_VARIABLE, "run42")
    temporary = temporary_path(tmp_path / "model.pt")
    assert temporary.name == f"model.pt.tmp-{host_name()}-{os.getpid()}-run42"
    assert temporary_writer(temporary) == (host_name(), os.getpid(), "run42")
    assert temporary_writer(tmp_path / "model.pt.tmp-1234") == (host_name(), 1234, "")  # the former scheme
    assert temporary_writer(tmp_path / "notes.tmp-draft") is None


def test_a_killed_writers_temporary_is_cleaned_by_the_next_run(tmp_path, caplog):
    final = tmp_path / "results" / "eval" / "summary.json"
    code = f"""
        import os, signal
        from core.atomic import atomic_path
        with atomic_path({str(final)!r}) as temporary:
            temporary.write_text("half")
            os.kill(os.getpid(), signal.SIGKILL)
    """
    killed = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=ENV, timeout=120)
    assert killed.returncode == -signal.SIGKILL
    [leftover] = final.parent.glob("summary.json.tmp-*")
    writer_host, writer_pid, _ = temporary_writer(leftover)
    assert writer_host == host_name() and writer_pid != os.getpid()
    foreign = final.with_name(f"summary.json.tmp-other-machine-{os.getpid()}-abc")
    foreign.write_text("another host may still be writing this")
    with caplog.at_level(logging.WARNING, logger="core.atomic"):
        assert remove_leftovers(tmp_path / "results") == [leftover]
    assert f"pid {writer_pid} on {host_name()}" in caplog.text
    assert foreign.exists() and not leftover.exists()
    # and the next write of the same file cleans it too, whatever scheme named it
    stale = final.with_name("summary.json.tmp-999999999")
    stale.write_text("half")
    write_text(final, "{}")
    assert not stale.exists() and final.read_text() == "{}" and foreign.exists()


def test_a_live_writers_staging_folder_is_not_a_leftover(tmp_path):
    final = tmp_path / "prepared"
    code = f"""
        import time
        from core.atomic import atomic_directory
        with atomic_directory({str(final)!r}) as staging:
            (staging / "train.npy").write_bytes(b"x")
            print("ready", flush=True)
            time.sleep(300)
    """
    first = python_child(code, tmp_path)
    try:
        wait_ready(first)
        [staging] = tmp_path.glob("prepared.tmp-*")
        assert remove_leftovers(tmp_path) == []
        with pytest.raises(WriterBusyError) as refused, atomic_directory(final):
            pass
        assert f"pid {first.pid}" in str(refused.value) and str(final) in str(refused.value)
        assert (staging / "train.npy").exists()
    finally:
        stop(first)
    with atomic_directory(final) as mine:  # the first is gone: its staging folder and writer mark are leftovers
        (mine / "train.npy").write_bytes(b"y")
    assert not staging.exists() and (final / "train.npy").read_bytes() == b"y"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["prepared"]


def test_a_second_training_run_on_one_output_is_refused(tmp_path):
    output = tmp_path / "lapcvae" / "level1.pt"
    curve = output.with_name("level1.log.csv")
    code = f"""
        import time
        from pathlib import Path
        from core.atomic import exclusive_writer
        with exclusive_writer({str(output)!r}):
            Path({str(curve)!r}).write_text("step,epoch,loss\\n1,0,1.0\\n")
            print("ready", flush=True)
            time.sleep(300)
    """
    first = python_child(code, tmp_path)
    model = VAE(resolution=16, latent_dim=4, widths=[4, 8], kl_weight=0.01)
    settings = {"batch_size": 4, "epochs": 1, "lr": 1e-3, "bf16": False, "log_every": 1, "grad_clip": 1.0}
    images = np.zeros((8, 3, 16, 16), dtype=np.uint8)
    try:
        wait_ready(first)
        with pytest.raises(WriterBusyError, match=f"pid {first.pid}"):
            fit(model, images, settings=settings, seed=0, output=output, device="cpu")
        assert curve.read_text() == "step,epoch,loss\n1,0,1.0\n" and not output.exists()
    finally:
        stop(first)
    fit(model, images, settings=settings, seed=0, output=output, device="cpu")  # the first was killed: taken over
    assert torch.load(output, weights_only=True)["kind"] == "vae"
    assert not output.with_name("level1.pt.writing").exists()


def test_a_killed_writers_mark_is_a_leftover(tmp_path):
    output = tmp_path / "model.pt"
    code = f"""
        import os, signal
        from core.atomic import exclusive_writer
        with exclusive_writer({str(output)!r}):
            os.kill(os.getpid(), signal.SIGKILL)
    """
    subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=ENV, timeout=120)
    mark = output.with_name("model.pt.writing")
    assert json.loads(mark.read_text())["host"] == host_name()
    assert remove_leftovers(tmp_path) == [mark]
    with exclusive_writer(output), atomic_path(output) as temporary:
        temporary.write_bytes(b"ok")
    assert output.read_bytes() == b"ok" and not mark.exists()
