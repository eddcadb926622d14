"""Clear the lock a killed Snakemake leaves behind, so that "run the same command again" works after a kill.

Snakemake locks its working directory with files in `.snakemake/locks/` and deletes them when it exits. A
SIGKILL (or a lost machine) leaves them behind, and the next run of the same command stops with "Directory
cannot be locked" until someone runs `snakemake --unlock`. The lock protects against two Snakemake processes
writing the same files, so it is stale exactly when no process of a workflow run is left in this folder: no
Snakemake process and no job of one (a job started by a Snakemake that was killed alone keeps running and
writing). The Snakefile calls `clear_stale_locks()` before Snakemake takes its lock; only then, and only on
Linux, where /proc shows every process of this user with its folder, are the lock files removed. Otherwise the
lock stays, and the message names the processes to wait for (or stop) before running the command again.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)
LOCK_DIR = Path(".snakemake/locks")
PROC = Path("/proc")
# Every job of the DAG gets this variable from the Snakefile (workflow.pipeline.export_params).
JOB_MARKER = b"LAPCVAE_PARAMS="


def _parent(pid: int) -> int | None:
    try:
        # /proc/<pid>/stat: "pid (name) state ppid ..."; the name may hold spaces and parentheses.
        return int((PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _ancestors(pid: int) -> set[int]:
    """`pid` and every process above it (e.g. the `make` or `dvc repro` that started this Snakemake)."""
    seen = set()
    while pid and pid not in seen:
        seen.add(pid)
        pid = _parent(pid) or 0
    return seen


def _within(folder: Path, workdir: Path) -> bool:
    return folder == workdir or workdir in folder.parents


def workflow_processes(workdir: str | Path) -> list[tuple[int, str]]:
    """(pid, command line) of the other processes of a workflow run in `workdir`: Snakemake processes and their
    jobs, found by their folder and their command line or environment. This process and its ancestors are
    left out. Raises OSError where /proc is not available."""
    workdir = Path(workdir).resolve()
    if not (PROC / "self" / "cwd").exists():
        raise OSError(f"{PROC} is not available: cannot tell whether another Snakemake runs in {workdir}")
    own = _ancestors(os.getpid())
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) in own:
            continue
        try:
            folder = Path(os.readlink(entry / "cwd"))
            if not _within(folder, workdir):
                continue
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
            is_job = JOB_MARKER in (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or another user's process (which cannot hold our lock files)
            continue
        if is_job or b"snakemake" in command:
            found.append((int(entry.name), command.decode(errors="replace")))
    return found


def clear_stale_locks(workdir: str | Path = ".") -> bool:
    """Remove Snakemake's lock files in `workdir` if no process of a workflow run is left there.

    Returns True if stale lock files were removed. Never removes a lock that a live process may hold.
    """
    lock_dir = Path(workdir) / LOCK_DIR
    locks = sorted(lock_dir.glob("*.lock")) if lock_dir.is_dir() else []
    if not locks:
        return False
    try:
        holders = workflow_processes(workdir)
    except OSError as error:
        logger.warning("%s holds Snakemake's lock, and %s. If no Snakemake runs here any more (it was killed), "
                       "run `snakemake --unlock`, then the same command again.", lock_dir, error)
        return False
    if holders:
        listing = "; ".join(f"PID {pid}: {command[:120]}" for pid, command in holders)
        logger.warning("%s is locked, and these processes of a workflow run still run in %s: %s. Wait for them "
                       "to finish (or stop them: kill PID), then run the same command again.",
                       lock_dir, Path(workdir).resolve(), listing)
        return False
    for lock in locks:
        lock.unlink(missing_ok=True)
    logger.warning("removed the lock a killed Snakemake left in %s (no Snakemake process or job of one runs "
                   "here any more); unfinished jobs rerun and resume", lock_dir)
    return True
