"""The command of every DVC stage: `python -m workflow.dvc_stage --cores all TARGET... [--until RULE...]` runs
`snakemake` with those arguments (Snakemake decides which jobs need to run), and adds what `dvc repro` expects of
a stage's command:

  - `dvc repro -f` (`--force`, with or without `-s`) recomputes the stage: DVC runs a stage's command whether or
    not it is forced, so the force is read from the `dvc` command line above this process and passed on as
    `--forcerun` of the stage's own jobs: a file target's job, the jobs whose files an aggregate rule target
    (`models_64`) gathers, an `--until` rule. Upstream jobs, which belong to other stages, are not forced;
  - stopping `dvc repro` stops Snakemake and its jobs: Snakemake runs in its own process group, which gets
    SIGTERM, SIGINT or SIGHUP when this process does, and SIGTERM when the `dvc` process above is gone (DVC
    itself dies of SIGTERM and leaves its stage's command running); a group still running `STOP_GRACE_SECONDS`
    later is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from core.atomic import pid_alive
from workflow.dvc_check import SNAKEMAKE, command_targets, snakemake_jobs
from workflow.locks import command_words, dvc_arguments, dvc_process

logger = logging.getLogger(__name__)
STOP_GRACE_SECONDS = 30  # Snakemake's jobs save nothing on SIGTERM; the grace lets Snakemake note them as failed
POLL_SECONDS = 1.0


def dvc_forced(command_line: Sequence[str]) -> bool:
    """Whether a dvc command line forces its stages (`repro -f`, `exp run -f`), read with DVC's own parser."""
    arguments = dvc_arguments(list(command_line))
    if not arguments:
        return False
    from dvc.cli.parser import get_main_parser

    try:
        parsed = get_main_parser().parse_args(arguments)
    except SystemExit:
        logger.warning("cannot read the dvc command line %s: the stage runs unforced", " ".join(command_line))
        return False
    return bool(getattr(parsed, "force", False))


def forced_jobs(targets: Sequence[str], until: Sequence[str], rule_inputs: dict[str, list[str]]) -> list[str]:
    """What `--forcerun` gets to recompute a stage: each file target, the files an aggregate rule target gathers
    (`rule_inputs`: its inputs in the DAG) and each `--until` rule."""
    forced: list[str] = []
    for target in targets:
        forced += rule_inputs.get(target, [target])
    return [*forced, *until]


def aggregate_inputs(targets: Sequence[str]) -> dict[str, list[str]]:
    """The inputs of each target that is a rule (not a file), from Snakemake's dry run."""
    rules = [target for target in targets if "/" not in target and "." not in target]
    if not rules:
        return {}
    jobs = snakemake_jobs(Path.cwd(), rules)
    return {job.rule: job.inputs for job in jobs if job.rule in rules}


def supervise(command: Sequence[str], watch_pid: int | None = None) -> int:
    """Run `command` in its own process group and return its exit status; signal the group when this process is
    stopped (SIGTERM, SIGINT, SIGHUP) or `watch_pid` is gone, and kill it if it outlives the grace period."""
    process = subprocess.Popen(list(command), start_new_session=True)
    stopping: list[int] = []

    def forward(signum: int, _frame: object = None) -> None:
        if not stopping:
            stopping.append(signum)
            logger.warning("stopping %s (process group %d) on %s", command[0], process.pid,
                           signal.Signals(signum).name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)

    previous = {signum: signal.signal(signum, forward) for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        deadline = None
        while True:
            try:
                status = process.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                pass
            if not stopping and watch_pid is not None and not pid_alive(watch_pid):
                logger.warning("the dvc process %d that ran this stage is gone", watch_pid)
                forward(signal.SIGTERM)
            if stopping and deadline is None:
                deadline = time.monotonic() + STOP_GRACE_SECONDS
            if deadline is not None and time.monotonic() > deadline:
                forward(signal.SIGKILL)
        if stopping:  # the jobs may outlive Snakemake: the whole group goes
            forward(signal.SIGKILL)
        return status if status >= 0 else 128 - status
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    dvc = dvc_process()
    command = ["snakemake", *argv]
    if dvc is not None and dvc_forced(command_words(dvc)):
        parsed = command_targets(shlex.join([*SNAKEMAKE, *argv[2:]])) if argv[:2] == SNAKEMAKE[3:] else None
        if parsed is None:
            sys.exit(f"cannot force {shlex.join(command)}: a stage's command is `{shlex.join(SNAKEMAKE)} TARGET...` "
                     "or `... --until RULE...`")
        targets, until = parsed
        forced = forced_jobs(targets, until, aggregate_inputs(targets))
        logger.info("dvc forces stage %s: --forcerun %s", os.environ.get("DVC_STAGE", "?"), " ".join(forced))
        command += ["--forcerun", *forced]
    sys.exit(supervise(command, watch_pid=dvc))


if __name__ == "__main__":
    main()
