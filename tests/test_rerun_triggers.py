"""What reruns: each job of the smoke DAG reruns when a file it imports or a params key it reads changes, and for
nothing else (workflow/pipeline.py job_fingerprint, Snakemake's params trigger; workflow/code_deps.py).

Each case changes one thing (a comment appended to a copy of one library file, or one params key) and compares
every job's fingerprint before and after, over the jobs of `snakemake -n --forceall --configfile config/smoke.yaml`.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ENV, REPO, copy_repository, run_command

from core.params import deep_merge, load_params
from workflow.code_deps import command_files, module_closure
from workflow.dvc_check import Job, parse_dry_run
from workflow.pipeline import COMMAND_RUN, SEED_WILDCARD, code_used, job_fingerprint

COMMENT = "# a comment changes no behaviour, but the file's bytes\n"


@pytest.fixture(scope="module")
def smoke_jobs() -> list[Job]:
    """Every job of the smoke DAG (both resolutions, every model), as Snakemake's dry run lists them."""
    output = run_command("snakemake", "-n", "--forceall", "--configfile", "config/smoke.yaml", cwd=REPO, timeout=300)
    return [job for job in parse_dry_run(output) if job.rule in COMMAND_RUN]


@pytest.fixture(scope="module")
def code_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository whose files a case may change."""
    return copy_repository(tmp_path_factory.mktemp("code"))


def name(job: Job) -> str:
    return job.rule + "".join(f" {key}={value}" for key, value in sorted(job.wildcards.items())
                              if key != SEED_WILDCARD)  # the first seed's folder: RESULTS itself


def fingerprints(jobs: list[Job], params: dict, root: Path) -> dict[str, str]:
    return {name(job): job_fingerprint(params, job.rule, job.wildcards, root) for job in jobs}


def changed_by_comment(jobs: list[Job], root: Path, library_file: str) -> set[str]:
    """The jobs whose fingerprint a comment appended to `library_file` (in the copy at `root`) changes."""
    params = load_params("config/smoke.yaml")
    before = fingerprints(jobs, params, root)
    path = root / library_file
    original = path.read_text()
    path.write_text(original + COMMENT)
    try:
        after = fingerprints(jobs, params, root)
    finally:
        path.write_text(original)
    return {job for job in before if before[job] != after[job]}


def changed_by_params(jobs: list[Job], override: dict) -> set[str]:
    params = load_params("config/smoke.yaml")
    before = fingerprints(jobs, params, REPO)
    after = fingerprints(jobs, deep_merge(params, override), REPO)
    return {job for job in before if before[job] != after[job]}


def where(jobs: list[Job], keep: Callable[[Job], bool]) -> set[str]:
    return {name(job) for job in jobs if keep(job)}


def reruns(jobs: list[Job], changed: set[str]) -> set[str]:
    """What Snakemake reruns: the changed jobs and every job downstream of one (it reads a file they rewrite)."""
    producer = {path: name(job) for job in jobs for path in job.outputs}
    rerun = set(changed)
    grew = True
    while grew:
        grew = False
        for job in jobs:
            if name(job) not in rerun and any(producer.get(path) in rerun for path in job.inputs):
                rerun.add(name(job))
                grew = True
    return rerun


def test_a_comment_in_a_baseline_reruns_only_that_baselines_jobs(smoke_jobs: list[Job], code_copy: Path) -> None:
    changed = changed_by_comment(smoke_jobs, code_copy, "baselines/vaegan.py")
    # training, the fitted prior and evaluation of the VAE/GAN, at both resolutions; no other model's jobs
    expected = where(smoke_jobs, lambda job: job.rule != "face_check"
                     and "vaegan" in (job.wildcards.get("baseline"), job.wildcards.get("model")))
    assert len(expected) == 6
    assert changed == expected
    # downstream: what reads its samples or summaries (its face check, Table 1, neighbours, figures, the report)
    assert {job.partition(" ")[0] for job in reruns(smoke_jobs, changed) - changed} == {
        "face_check", "table", "neighbours", "figures", "report"}


def test_a_comment_in_the_figures_reruns_only_the_figures(smoke_jobs: list[Job], code_copy: Path) -> None:
    changed = changed_by_comment(smoke_jobs, code_copy, "eval/figures.py")
    assert changed == where(smoke_jobs, lambda job: job.rule == "figures") == {"figures res=64", "figures res=128"}
    assert reruns(smoke_jobs, changed) == changed | {"report"}  # the report shows the figures


def test_a_comment_in_the_face_check_reruns_only_the_face_checks(smoke_jobs: list[Job], code_copy: Path) -> None:
    changed = changed_by_comment(smoke_jobs, code_copy, "eval/face_check.py")
    assert changed == where(smoke_jobs, lambda job: job.rule in ("face_check", "face_check_references"))
    # every evaluated model at both resolutions, PixelVAE at 64 px; the reference rows' sets at each resolution
    assert len(changed) == 13 + 2
    assert reruns(smoke_jobs, changed) - changed == {"table", "report"}


def test_a_comment_in_core_reruns_the_jobs_that_import_the_file(smoke_jobs: list[Job], code_copy: Path) -> None:
    # Every command writes through core/atomic.py: every job imports it.
    assert changed_by_comment(smoke_jobs, code_copy, "core/atomic.py") == where(smoke_jobs, lambda job: True)
    # core/device.py is imported by the commands that choose a device, not by data preparation, the study's
    # export, the reference rows or the face check (which run on the CPU).
    device = changed_by_comment(smoke_jobs, code_copy, "core/device.py")
    assert device == where(smoke_jobs, lambda job: job.rule not in ("generate_faces", "prepare", "export_study",
                                                                     "references", "face_check",
                                                                     "face_check_references"))


def test_a_comment_in_a_study_reruns_no_job_of_the_default_dag(smoke_jobs: list[Job], code_copy: Path) -> None:
    assert changed_by_comment(smoke_jobs, code_copy, "studies/tuning.py") == set()
    assert changed_by_comment(smoke_jobs, code_copy, "baselines/pixelvae.py") == where(
        smoke_jobs, lambda job: job.rule != "face_check"
        and "pixelvae" in (job.wildcards.get("baseline"), job.wildcards.get("model")))


def test_lapcvaes_learning_rate_retrains_lapcvae_only(smoke_jobs: list[Job]) -> None:
    changed = changed_by_params(smoke_jobs, {"lapcvae": {"64": {"train": {"lr": 0.001}}}})
    lapcvae_64 = where(smoke_jobs, lambda job: job.rule in ("train_level", "retrain_m")
                       and job.wildcards["res"] == "64")
    assert len(lapcvae_64) == 6  # 3 + 2 levels (the coarsest shared) and M retrained
    assert changed == lapcvae_64 | {"report"}  # the report prints the params
    # LapCVAE's size does concern the VAE: its widths are matched to LapCVAE's parameter count
    wider = changed_by_params(smoke_jobs, {"lapcvae": {"64": {"m_hidden": 32}}})
    assert {"train_baseline baseline=vae res=64", "train_baseline baseline=vae_equal_flops res=64"} <= wider
    assert "train_baseline baseline=vaegan res=64" not in wider


def test_an_inactive_data_sets_settings_rerun_only_the_report(smoke_jobs: list[Job]) -> None:
    assert load_params("config/smoke.yaml")["data"]["source"] == "synthetic"
    assert changed_by_params(smoke_jobs, {"data": {"celeba": {"md5": "0" * 32}}}) == {"report"}
    # the active data set's settings rerun its generation, which reruns everything after it
    count = changed_by_params(smoke_jobs, {"data": {"synthetic": {"count": 64}}})
    assert count == {"generate_faces", "report"}
    assert reruns(smoke_jobs, count) == where(smoke_jobs, lambda job: True)


def test_setting_the_inception_weights_reruns_evaluation(smoke_jobs: list[Job]) -> None:
    changed = changed_by_params(smoke_jobs, {"eval": {"fid": {"inception_weights": "weights/pt_inception.pth"}}})
    evaluations = where(smoke_jobs, lambda job: job.rule == "evaluate")
    assert len(evaluations) == 13
    # evaluate computes FID and KID; Table 1, the figures and the report read the whole eval section
    assert changed == evaluations | {"table", "figures res=64", "figures res=128", "report"}


def test_each_rule_runs_the_command_its_fingerprint_hashes() -> None:
    """COMMAND_RUN names the `lapcvae` command in every rule's shell command, the studies' and ablations' too."""
    rules = "\n".join(path.read_text() for path in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    for rule, command in COMMAND_RUN.items():
        start = re.search(rf"^\s*rule {rule}:$", rules, flags=re.MULTILINE)
        assert start, f"rule {rule} is in COMMAND_RUN but in no workflow/rules/*.smk"
        shell = rules[rules.index("shell:", start.end()):][:160]
        assert re.search(rf'"(OMP_NUM_THREADS=\{{threads\}} )?(lapcvae|\{{params\.launcher\}}) {command} ', shell), (
            rule, shell)
    output = run_command("snakemake", "-n", "--forceall", "all", "tune", "rate_distortion", "budget_curve",
                         "ablations", "--configfile", "config/smoke.yaml", cwd=REPO, timeout=300)
    params = load_params("config/smoke.yaml")
    jobs = [job for job in parse_dry_run(output) if job.outputs]  # aggregate rules (all, tune, ...) run nothing
    assert {job.rule for job in jobs} <= set(COMMAND_RUN)
    assert all(job_fingerprint(params, job.rule, job.wildcards) for job in jobs)
    with pytest.raises(ValueError, match="COMMAND_RUN"):
        code_used("a_new_rule", {})


def repository_modules_imported(statements: str) -> set[str]:
    """The repository files a fresh interpreter has imported after running `statements`."""
    program = (f"{statements}\nimport json, sys\n"
               "print(json.dumps(sorted(getattr(m, '__file__', None) or '' for m in list(sys.modules.values()))))")
    result = subprocess.run([sys.executable, "-c", program], cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=300, check=True)
    files = [Path(file) for file in json.loads(result.stdout.splitlines()[-1]) if file]
    return {file.relative_to(REPO).as_posix() for file in files  # a venv inside the clone is not the repository's
            if file.is_relative_to(REPO) and not {"site-packages", "dist-packages"} & set(file.parts)}


def test_what_python_imports_is_what_the_fingerprint_hashes() -> None:
    """The static analysis misses nothing Python really imports: the VAE/GAN's training command with its class."""
    imported = repository_modules_imported(
        "from workflow.commands import train\nfrom core import registry\n"
        "registry.load_class(registry.spec('vaegan').model_class)")
    hashed = set(code_used("train_baseline", {"baseline": "vaegan", "res": "64"}))
    assert imported <= hashed
    assert "baselines/vaegan.py" in imported and "baselines/vaegan.py" in hashed
    assert "baselines/pixelvae.py" not in imported | hashed


def test_each_command_hashes_its_own_imports_not_its_neighbours() -> None:
    """Commands of one module import their library modules inside their functions: only theirs count."""
    figures = {path.relative_to(REPO).as_posix() for path in command_files("figures")}
    evaluate = {path.relative_to(REPO).as_posix() for path in command_files("evaluate")}
    assert "eval/figures.py" in figures and "eval/figures.py" not in evaluate
    assert "eval/report.py" not in figures | evaluate
    # a module named by a string is imported too (doc_summary("eval.figures") for --help)
    assert {path.name for path in module_closure(["eval.study_export"])} >= {"study_export.py", "study_page.html"}
    references = {path.relative_to(REPO).as_posix() for path in command_files("references")}
    assert not any(path.startswith("studies/") for path in references)
