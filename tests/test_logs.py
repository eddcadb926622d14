"""The console log of a run (workflow/console.py and profiles/default): one line per job start and end with its
rule, wildcards and the run's progress; a failed job's error in full; the complete blocks in Snakemake's log file
and in a dry run. Each test runs the repository's Snakefile (and so its default profile) on a one- or two-job
target in a folder of its own."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from conftest import ENV, REPO

from workflow.console import CompactFormatter

SMOKE = str(REPO / "config/smoke.yaml")
JOB_LINE = re.compile(r"^\[\d\d:\d\d:\d\d\] (start|done ) (.*)$")


def snakemake(workdir: Path, *arguments: str) -> subprocess.CompletedProcess:
    """`snakemake` with the repository's Snakefile in `workdir`, at the smoke scale, console output in stdout."""
    if not (workdir / "params.yaml").exists():
        (workdir / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    return subprocess.run(["snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "1",
                           *arguments, "--configfile", SMOKE],
                          env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)


def after_job_stats(console: str) -> list[str]:
    """The console's lines after Snakemake's job-count table: what the run printed about its jobs."""
    return console.split("Job stats:")[1].split("\n\n", 1)[1].splitlines()


def test_a_run_prints_one_line_per_job_start_and_end_and_no_job_output(tmp_path: Path) -> None:
    result = snakemake(tmp_path, "data/prepared/manifest.json")
    console = result.stdout
    assert result.returncode == 0, console[-3000:]
    assert "profiles/default" in console.splitlines()[0]  # the workflow profile `make run` gets
    lines = after_job_stats(console)
    jobs = [JOB_LINE.match(line).groups() for line in lines if JOB_LINE.match(line)]
    assert [(kind, re.sub(r" \(job \d+\)", "", label)) for kind, label in jobs] == [
        ("start", "generate_faces"), ("done ", "generate_faces: 1 of 2 jobs (50%)"),
        ("start", "prepare"), ("done ", "prepare: 2 of 2 jobs (100%)")]
    # besides the job lines, only where the complete log is and how long the run took
    others = [line for line in lines if not JOB_LINE.match(line)]
    assert [line.split(":")[0] for line in others] == ["Complete log(s)", "Elapsed time"], others
    for block_word in ("input:", "output:", "reason:", "resources:", "Shell command", "localrule", "Execute "):
        assert block_word not in console, block_word
    job_output = (tmp_path / "logs/prepare.log").read_text().splitlines()
    assert job_output and not any(line in console for line in job_output if line.strip())  # it stays in its log
    # Snakemake's own log file keeps each job's full block: what it read and wrote, and why it ran
    (full_log,) = (tmp_path / ".snakemake/log").glob("*.snakemake.log")
    full = full_log.read_text()
    assert "localrule prepare:" in full and "output: data/raw/synthetic" in full and "reason: " in full
    assert "Shell command: lapcvae prepare --params" in full
    assert len("\n".join(lines)) < len("\n".join(after_job_stats(full))) / 3


def test_a_dry_run_still_says_what_each_job_would_read_write_and_why(tmp_path: Path) -> None:
    result = snakemake(tmp_path, "-n", "data/prepared/manifest.json")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "rule generate_faces:" in result.stdout and "reason: Missing output files" in result.stdout
    assert "output: data/raw/synthetic" in result.stdout


def test_a_failed_job_shows_its_rule_log_path_command_and_error(tmp_path: Path) -> None:
    """`prepare` on a raw tree without images: the job fails; its error comes in full, its own message included."""
    raw = tmp_path / "data/raw/synthetic"
    (raw / "img_align_celeba").mkdir(parents=True)
    for name in ("list_attr_celeba.txt", "list_eval_partition.txt", "synthetic_extras.csv"):
        (raw / name).write_text("")
    result = snakemake(tmp_path, "data/prepared/manifest.json", "--allowed-rules", "prepare")
    console = result.stdout
    assert result.returncode != 0
    lines = after_job_stats(console)
    assert [JOB_LINE.match(line).group(2) for line in lines if JOB_LINE.match(line)] == ["prepare (job 0)"]
    assert "Error in rule prepare:" in console
    assert "log: logs/prepare.log (check log file(s) for error details)" in console
    assert "lapcvae prepare --params" in console  # the shell command that failed
    error = (tmp_path / "logs/prepare.log").read_text().strip()
    assert "no JPEG images in data/raw/synthetic/img_align_celeba" in error
    assert error in console  # the job's own message, from its log (show-failed-logs)


def test_a_job_line_names_a_further_seeds_folder_and_not_the_first_seeds_empty_one() -> None:
    formatter = CompactFormatter()
    first = formatter.format_job_info({"rule_name": "evaluate", "jobid": 1,
                                       "wildcards": {"seed_path": "", "res": "64", "model": "vae"}})
    further = formatter.format_job_info({"rule_name": "evaluate", "jobid": 2,
                                         "wildcards": {"seed_path": "/seeds/1", "res": "64", "model": "vae"}})
    assert first.endswith(" start evaluate res=64 model=vae (job 1)"), first
    assert further.endswith(" start evaluate seed_path=/seeds/1 res=64 model=vae (job 2)"), further
