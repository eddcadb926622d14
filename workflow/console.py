"""Snakemake's console output during a run: one line per job started and one per job finished (its rule, its
wildcards and the run's progress), errors in full.

Snakemake prints a block per job (input and output lists, reason, resources, shell command), about 1.3 KB a job,
which made most of a run's console log. The Snakefile calls `use_compact_console`, which gives Snakemake's console
handler `CompactFormatter`. Snakemake's own log file (`.snakemake/log/*.snakemake.log`, named at the end of a run)
keeps the full blocks and shell commands; a dry run (`snakemake -n`, which says why each job would run),
`--verbose` and `--debug-dag` keep them on the console too; a failed job's error (rule, log path, shell command,
and its log: `show-failed-logs` in profiles/default) is printed as Snakemake prints it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from snakemake.logging import ColorizingTextHandler, DefaultFormatter, LoggerManager, format_wildcards, get_event
from snakemake_interface_logger_plugins.common import LogEvent

# Messages Snakemake repeats at every scheduling round, which say nothing the job lines do not.
SCHEDULING_MESSAGES = frozenset({"Select jobs to execute..."})


def clock() -> str:
    """The time of day a job line starts with."""
    return time.strftime("[%H:%M:%S]")


class CompactFormatter(DefaultFormatter):
    """Snakemake's formatter with a job's start as one line and its end, with the run's progress, as another."""

    def __init__(self, quiet: Any = None, show_failed_logs: bool = False) -> None:
        super().__init__(quiet, show_failed_logs)
        self.labels: dict[int, str] = {}  # job id -> "rule wildcards", for its end line
        self.finished: list[int] = []  # jobs ended since the last progress count

    def format(self, record: logging.LogRecord) -> str:
        event = get_event(record)
        if event == LogEvent.JOB_STARTED:  # "Execute n jobs...": each job has its own line
            return ""
        if event is None and record.getMessage() in SCHEDULING_MESSAGES:
            return ""
        return super().format(record)

    def format_job_info(self, msg: dict[str, Any]) -> str:
        shown = {name: value for name, value in msg["wildcards"].items() if value != ""}  # the first seed's seed_path
        wildcards = format_wildcards(shown).replace(", ", " ")
        label = f"{msg['rule_name']} {wildcards}".rstrip()
        self.labels[msg["jobid"]] = label
        return f"{clock()} start {label} (job {msg['jobid']})"

    def format_shellcmd(self, msg: dict[str, Any]) -> str:
        return ""  # in Snakemake's log file; on the console only in a failed job's error

    def format_job_finished(self, msg: dict[str, Any]) -> str:
        self.finished.append(msg["job_id"])  # printed with the progress count that Snakemake logs next
        return ""

    def format_progress(self, msg: dict[str, Any]) -> str:
        count = super().format_progress(msg).removesuffix(" done").replace(" steps ", " jobs ")
        ended = [f"{clock()} done  {self.labels.get(job, f'job {job}')} (job {job}): {count}" for job in self.finished]
        self.finished.clear()
        return "\n".join(ended) or f"{clock()} {count}"


class CompactHandler(ColorizingTextHandler):
    """Snakemake's console handler without the blank line it writes before each job's information."""

    def emit(self, record: logging.LogRecord) -> None:
        self.last_msg_was_job_info = True  # the flag that makes Snakemake's handler write a blank line
        super().emit(record)


def use_compact_console(manager: LoggerManager) -> bool:
    """Give Snakemake's console handler one line per job start and end; False where the full blocks stay: a dry
    run, `--verbose` or `--debug-dag`, a logger plugin writing to the console, or a handler already compact."""
    settings = manager.settings
    if settings.dryrun or settings.verbose or settings.debug_dag:
        return False
    for handler in list(manager.logger.handlers):
        if type(handler) is ColorizingTextHandler and handler.name == "DefaultStreamHandler":
            compact = CompactHandler(nocolor=settings.nocolor, stream=handler.stream,
                                     formatter=CompactFormatter(settings.quiet, settings.show_failed_logs))
            for log_filter in handler.filters:
                compact.addFilter(log_filter)
            compact.name = handler.name
            compact.setLevel(handler.level)
            manager.logger.removeHandler(handler)
            manager.logger.addHandler(compact)
            return True
    return False
