"""One run per working folder, and the lock a killed Snakemake leaves behind cleared, so that "run the same
command again" works after a kill.

The project's run lock, `.snakemake/lapcvae/run.lock` (JSON: host, pid, run id, command, start), is taken by
every run that writes into a project folder (one holding a Snakefile): a Snakemake run (the Snakefile calls
`hold_run_lock` before Snakemake takes its own lock), a `dvc repro` (its stages' Snakemake runs take it for the
`dvc` process, so it holds from the first stage to the last) and a `lapcvae` command run by hand
(`hold_command_lock`). Jobs of the holding run carry its id (`LAPCVAE_RUN_ID`) and pass. A second run is
refused with one line naming the live one. The lock is stale when its holder no longer runs on this host and no
process carries its run id (jobs of a Snakemake killed alone still write); a stale lock is taken over with a
logged line. A lock from another host is never removed here: `snakemake --unlock` (or
`python -m workflow.locks unlock`) clears it once its run is known to be over. Snakemake's own lock is not relied
on: Snakemake deletes `.snakemake/locks` whenever any run in the folder exits.

Snakemake's own lock files:
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

import argparse
import atexit
import contextlib
import fcntl
import json
import logging
import os
import secrets
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.atomic import RUN_ID_VARIABLE, host_name, pid_alive, remove_leftovers, write_text

logger = logging.getLogger(__name__)
LOCK_DIR = Path(".snakemake/locks")
RUN_LOCK = Path(".snakemake/lapcvae/run.lock")
UNLOCK_HINT = "`snakemake --unlock` (or `python -m workflow.locks unlock`)"
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


# ----- the project's run lock --------------------------------------------------------------------------------
class RunLockedError(ValueError):
    """Another run holds the working folder."""


@dataclass(frozen=True)
class RunHolder:
    """Who holds a working folder."""

    host: str
    pid: int
    run_id: str
    command: str
    started: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, `{self.command}`, started {self.started} (run {self.run_id})"


def _command_line(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return " ".join(sys.argv) if pid == os.getpid() else f"process {pid}"


def read_holder(workdir: str | Path = ".") -> RunHolder | None:
    """The holder recorded in `workdir`'s run lock, None when there is none (or it cannot be read)."""
    try:
        fields = json.loads((Path(workdir) / RUN_LOCK).read_text(encoding="utf-8"))
        return RunHolder(str(fields["host"]), int(fields["pid"]), str(fields["run_id"]), str(fields["command"]),
                         str(fields["started"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as error:
        logger.warning("ignoring the unreadable run lock %s (%s)", Path(workdir) / RUN_LOCK, error)
        return None


def _run_processes(run_id: str) -> list[int]:
    """Processes of this host that carry `run_id` in their environment (the jobs of that run)."""
    marker = f"{RUN_ID_VARIABLE}={run_id}".encode()
    found = []
    for entry in PROC.iterdir() if PROC.is_dir() else []:
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def holder_state(holder: RunHolder) -> str:
    """"ours" (this process belongs to the holding run), "live", "foreign" (another host's: cannot be checked
    here) or "stale" (nothing of that run runs any more)."""
    if holder.host != host_name():
        return "ours" if holder.run_id == os.environ.get(RUN_ID_VARIABLE) else "foreign"
    if holder.run_id == os.environ.get(RUN_ID_VARIABLE) or holder.pid in _ancestors(os.getpid()):
        return "ours"
    if pid_alive(holder.pid) or _run_processes(holder.run_id):
        return "live"
    return "stale"


def refusal(workdir: str | Path, holder: RunHolder, state: str) -> str:
    """The one line a refused run stops with."""
    where = Path(workdir).resolve()
    if state == "foreign":
        return (f"{where} is locked by a run on another host: {holder.describe()}. If that run is over (its "
                f"machine was stopped or lost), clear the lock with {UNLOCK_HINT} in {where}, then run the command "
                "again")
    return (f"{where} is in use by another run: {holder.describe()}. Wait for it to finish (or stop it: kill "
            f"{holder.pid}), then run the command again; one run per working folder")


@contextlib.contextmanager
def _guard(workdir: str | Path) -> Iterator[None]:
    """Serialise reading and replacing the run lock between processes of this host (a flock on a side file)."""
    path = Path(workdir) / RUN_LOCK.with_name(RUN_LOCK.name + ".guard")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        with contextlib.suppress(OSError):  # no flock on this file system: reading and writing stay unguarded
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        yield


def acquire_run_lock(workdir: str | Path = ".", holder_pid: int | None = None,
                     command: str | None = None) -> tuple[RunHolder, bool]:
    """Take `workdir`'s run lock for process `holder_pid` (default: this one), or join the run that holds it when
    this process belongs to it. Returns (holder, whether this call took it). Raises RunLockedError naming the
    live run (or another host's) that holds it; takes over a stale lock with a logged line."""
    pid = os.getpid() if holder_pid is None else holder_pid
    with _guard(workdir):
        current = read_holder(workdir)
        if current is not None:
            state = holder_state(current)
            if state == "ours":
                return current, False
            if state != "stale":
                raise RunLockedError(refusal(workdir, current, state))
            logger.warning("taking over the run lock %s: the run that held it is over (no process of it runs on "
                           "this host): %s", Path(workdir) / RUN_LOCK, current.describe())
        holder = RunHolder(host_name(), pid, secrets.token_hex(6), (command or _command_line(pid))[:300],
                           time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        write_text(Path(workdir) / RUN_LOCK, json.dumps(asdict(holder)) + "\n")
        return holder, True


def release_run_lock(workdir: str | Path, holder: RunHolder) -> None:
    """Remove `workdir`'s run lock if `holder` still holds it."""
    with _guard(workdir):
        if read_holder(workdir) == holder:
            (Path(workdir) / RUN_LOCK).unlink(missing_ok=True)


def unlock(workdir: str | Path = ".") -> bool:
    """Clear `workdir`'s run lock on request (`snakemake --unlock`): a stale one, or another host's, whose run the
    person asking knows to be over. A live run's lock on this host stays (RunLockedError). True if removed."""
    with _guard(workdir):
        current = read_holder(workdir)
        if current is None:
            return False
        if current.host == host_name() and (pid_alive(current.pid) or _run_processes(current.run_id)):
            raise RunLockedError(refusal(workdir, current, "live"))
        (Path(workdir) / RUN_LOCK).unlink(missing_ok=True)
    logger.warning("removed the run lock of %s: %s", Path(workdir).resolve(), current.describe())
    return True


def _ancestor_chain(pid: int) -> list[int]:
    """The processes above `pid`, nearest first."""
    chain: list[int] = []
    while (pid := _parent(pid) or 0) and pid not in chain:
        chain.append(pid)
    return chain


def command_words(pid: int) -> list[str]:
    """A process's command line, word by word ([] when it cannot be read)."""
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def dvc_arguments(words: list[str]) -> list[str] | None:
    """The arguments after `dvc` in a command line (`dvc repro -f`, `python .../bin/dvc repro -f`,
    `python -m dvc repro -f`); None when it is not dvc's."""
    for index, word in enumerate(words[:3]):
        if word == "-m" and words[index + 1:index + 2] == ["dvc"]:
            return words[index + 2:]
        if Path(word).name == "dvc" and (index == 0 or words[index - 1] != "-m"):
            return words[index + 1:]
    return None


def dvc_process() -> int | None:
    """The `dvc` process (repro, exp run) above this one, when this runs as a DVC stage's command."""
    if "DVC_STAGE" not in os.environ:
        return None
    return next((pid for pid in _ancestor_chain(os.getpid()) if dvc_arguments(command_words(pid)) is not None),
                None)


def _snakemake_mode(argv: list[str]) -> str | None:
    """What a Snakemake command line does: "unlock", "dry" (a dry run or a listing: writes nothing), "run";
    None when this process is not Snakemake's command line (the API: decided when the run starts)."""
    program = Path(argv[0]) if argv else Path()
    if program.name != "snakemake" and program.parent.name != "snakemake":
        return None
    from snakemake.cli import get_argument_parser  # only ever called inside a Snakemake process

    try:
        args, _ = get_argument_parser().parse_known_args(argv[1:])
    except SystemExit:
        return None
    if getattr(args, "unlock", False):
        return "unlock"
    reading = ("dryrun", "list_rules", "list_target_rules", "summary", "detailed_summary", "dag", "d3dag",
               "rulegraph", "filegraph", "lint", "print_compilation", "list_changes", "list_untracked",
               "containerize", "export_cwl", "generate_unit_tests", "archive", "report")
    return "dry" if any(getattr(args, name, None) for name in reading) else "run"


def hold_run_lock(workflow: Any, paths: Mapping[str, str] | None = None, workdir: str | Path = ".") -> None:
    """The Snakefile's side of the run lock (main process only): take it for a run that executes jobs (for the
    `dvc` process above when this is a DVC stage), refuse with WorkflowError when another run holds it, clear it
    on `--unlock`; then clear Snakemake's stale lock files and, as the holder, delete the leftovers of dead writers
    in the output roots (`paths`: params' paths.*; the raw root's own entries only, not the images below them).
    Every job gets the run's id ($LAPCVAE_RUN_ID)."""
    from snakemake.exceptions import WorkflowError

    mode = _snakemake_mode(sys.argv)
    if mode == "unlock":
        try:
            unlock(workdir)
        except RunLockedError as error:
            raise WorkflowError(str(error)) from None
        return
    if mode == "dry":
        current = read_holder(workdir)
        if current is not None and holder_state(current) in ("live", "foreign"):
            logger.warning("%s (a dry run goes on)", refusal(workdir, current, holder_state(current)))
        clear_stale_locks(workdir)
        return

    def take(*_: Any, **__: Any) -> None:
        dvc = dvc_process()
        try:
            holder, taken = acquire_run_lock(workdir, holder_pid=dvc)
        except RunLockedError as error:
            raise WorkflowError(str(error)) from None
        os.environ[RUN_ID_VARIABLE] = holder.run_id
        if taken and dvc is None:  # a DVC run's lock stays until `dvc` ends; the next run finds it over
            atexit.register(release_run_lock, workdir, holder)
        clear_stale_locks(workdir)
        for key, root in (paths or {}).items():
            remove_leftovers(Path(root).parent, recursive=False)  # a root written whole leaves `<root>.tmp-*`
            remove_leftovers(root, recursive=key != "raw")

    if mode == "run":
        take()
    else:
        workflow.onstart(take)


_COMMAND_LOCKS: list[tuple[Path, RunHolder]] = []


def project_folder(path: str | Path) -> Path | None:
    """The working folder a path belongs to: the nearest folder above it (or it) holding a Snakefile."""
    resolved = Path(os.path.abspath(Path(path).expanduser()))
    for folder in (resolved, *resolved.parents):
        if (folder / "Snakefile").is_file():
            return folder
    return None


def hold_command_lock(outputs: Iterable[str | Path | None], roots: Iterable[str | Path] = ()) -> None:
    """A `lapcvae` command's side: take the run lock of each project folder whose output roots (`roots`, the
    params' paths.*: relative ones inside the project) its outputs lie in, unless this process belongs to the run
    that holds it (a Snakemake or DVC job). Raises RunLockedError naming the run that holds one;
    `release_command_locks` (the CLI calls it when the command ends) gives them back."""
    roots = [Path(root) for root in roots]
    folders = set()
    for path in outputs:
        folder = project_folder(path) if path is not None else None
        if folder is None:
            continue
        resolved = Path(os.path.abspath(Path(path).expanduser()))
        if any(resolved == (folder / root) or (folder / root) in resolved.parents for root in roots):
            folders.add(folder)
    for folder in sorted(folders):
        if any(held == folder for held, _ in _COMMAND_LOCKS):
            continue
        holder, taken = acquire_run_lock(folder)
        if taken:
            _COMMAND_LOCKS.append((folder, holder))


def release_command_locks() -> None:
    while _COMMAND_LOCKS:
        release_run_lock(*_COMMAND_LOCKS.pop())


atexit.register(release_command_locks)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workflow.locks", description="Show or clear a working folder's "
                                     "run lock (one run per folder: workflow/locks.py).")
    parser.add_argument("action", choices=["show", "unlock"])
    parser.add_argument("folder", nargs="?", default=".")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    holder = read_holder(args.folder)
    if args.action == "show":
        print("no run holds it" if holder is None else f"{holder_state(holder)}: {holder.describe()}")
        return
    try:
        unlock(args.folder)
    except RunLockedError as error:
        sys.exit(str(error))


if __name__ == "__main__":
    main()
