"""The workflow itself: the DAG Snakemake builds at each scale, lint, params (dvc.yaml: tests/test_dvc.py)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.params import deep_merge, load_params
from core.registry import models_at
from workflow.pipeline import BASELINES, MODELS, job_fingerprint

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def run(*command: str, cwd: Path = REPO, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


def job_counts(dry_run_output: str) -> dict[str, int]:
    """The 'Job stats' table of `snakemake -n`."""
    lines = dry_run_output.split("Job stats:")[1].splitlines()
    counts = {}
    for line in lines[3:]:
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            break
        counts[parts[0]] = int(parts[1])
    return counts


def job_priorities(dry_run: str) -> dict[str, set[int]]:
    """The priorities `snakemake -n` prints for the jobs of each rule (0 where it prints none)."""
    priorities: dict[str, set[int]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run):
        name = re.match(r"(?:local)?rule (\w+):", block)
        if name:
            value = re.search(r"^\s+priority: (\d+)", block, re.MULTILINE)
            priorities.setdefault(name.group(1), set()).add(int(value.group(1)) if value else 0)
    return priorities


@pytest.mark.parametrize(
    ("configfile", "source_rule"),
    [(None, "generate_faces"), ("config/smoke.yaml", "generate_faces"), ("config/paper.yaml", "fetch_celeba")],
)
def test_dry_run_lists_the_whole_study(configfile: str | None, source_rule: str) -> None:
    extra = ["--configfile", configfile] if configfile else []
    output = run("snakemake", "-n", "--forceall", *extra).stdout  # the whole graph, whatever is already built
    counts = job_counts(output)
    params = load_params(*([configfile] if configfile else []))
    levels = sum(params["lapcvae"][str(res)]["levels"] for res in params["data"]["resolutions"])
    n_res = len(params["data"]["resolutions"])
    assert counts[source_rule] == 1
    # with and without M, every level, every resolution; the coarsest level (no M) is one job for both variants
    assert counts["train_level"] == 2 * levels - n_res
    assert counts["retrain_m"] == n_res
    # each model at the resolutions its params section has (core/registry.py models_at): PixelVAE at 64 px only
    runs = {res: models_at(params, res) for res in params["data"]["resolutions"]}
    assert counts["train_baseline"] == sum(len(set(BASELINES) & set(models)) for models in runs.values())
    assert counts["evaluate"] == sum(len(models) for models in runs.values())
    assert "results/models/64/pixelvae/model.pt" in output and "results/eval/64/pixelvae/summary.json" in output
    if configfile in (None, "config/paper.yaml"):  # the paper's PixelVAE is 64 px only, and so is the default
        assert runs[128] == [model for model in MODELS if model != "pixelvae"]
        assert "/128/pixelvae" not in output and "128_pixelvae" not in output
    for rule in ("table", "report", "export_study"):
        assert counts[rule] == 1
    for rule in ("figures", "neighbours", "edit_coarse", "edit_region"):
        assert counts[rule] == n_res
    # Training before evaluation (common.smk TRAIN_PRIORITY): the long chains start first on a small machine.
    priorities = job_priorities(output)
    assert all(priorities[rule] == {1} for rule in ("train_level", "train_baseline", "retrain_m")), priorities
    assert all(priorities[rule] == {0} for rule in ("evaluate", "references", "figures", "report")), priorities


def test_lint_is_clean() -> None:
    result = run("snakemake", "--lint")
    assert "Lints for" not in result.stdout + result.stderr


def test_invalid_params_stop_the_workflow_naming_the_key(tmp_path: Path) -> None:
    override = tmp_path / "bad.yaml"
    override.write_text(yaml.safe_dump({"lapcvae": {"64": {"kl_weights": [1.0, 2.0]}}}))
    result = run("snakemake", "-n", "--configfile", str(override), check=False)
    assert result.returncode != 0
    assert "lapcvae.64.kl_weights" in result.stdout + result.stderr


def shell_words(command: str) -> list[str]:
    """The words and operators bash would see in a command (`;`, `|`, `&&` as words of their own)."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def test_every_rule_passes_paths_as_words_not_shell_code(tmp_path: Path) -> None:
    """A results folder named `res;touch PWNED;` (and a second seed, whose jobs add a --params word): in every
    job's command of the whole DAG each path stays one word, and nothing but the log's redirection is shell syntax."""
    override = tmp_path / "hostile.yaml"
    override.write_text(yaml.safe_dump({"paths": {"results": "res;touch PWNED;"}, "seeds": [0, 1]}))
    (tmp_path / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    output = run("snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "-p", "--forceall",
                 "all", "ablations", "tune", "rate_distortion", "budget_curve",
                 "--configfile", "config/smoke.yaml", str(override)).stdout
    commands = [command for command in re.findall(r"^Shell command: (.*)$", output, flags=re.MULTILINE)
                if command != "None"]  # aggregate rules run nothing
    assert len(commands) > 50
    for command in commands:
        words = shell_words(command)
        assert ";" not in words and "touch" not in words and "" not in words, command
        assert "|" not in words and words[-5] == ">" and words[-3:] == ["2", ">&", "1"], command  # > log 2>&1
        written = [words[index + 1] for index, word in enumerate(words) if word in ("--out", "--out-dir")]
        if any(path.startswith("res;touch PWNED;/seeds/1/") for path in written):  # a job of the second seed
            assert words[words.index("--params", words.index("--params") + 1) + 1] == ".snakemake/lapcvae/seed-1.yaml"
    training = [shell_words(command) for command in commands if " train-level " in command]
    assert any(words[words.index("--coarser") + 1].startswith("res;touch PWNED;/") for words in training
               if "--coarser" in words)
    assert not (tmp_path / "PWNED").exists()


def test_slurm_profile_submits_the_paper_dag() -> None:
    output = run(
        "snakemake", "-n", "--forceall", "--profile", "profiles/slurm", "--configfile", "config/paper.yaml"
    ).stdout
    assert job_counts(output)["train_level"] == 16  # 2 x (4 + 5) levels, the two coarsest shared by both variants


def test_fingerprints_rerun_only_what_a_change_concerns() -> None:
    params = load_params()
    changed = deep_merge(params, {"vaegan": {"64": {"gamma": 0.25}}})
    vaegan = {"res": "64", "baseline": "vaegan"}
    assert job_fingerprint(params, "train_baseline", vaegan) != job_fingerprint(changed, "train_baseline", vaegan)
    for rule, wildcards in [
        ("train_baseline", {"res": "64", "baseline": "vae"}),
        ("train_level", {"res": "64", "variant": "lapcvae", "level": "0"}),
        ("evaluate", {"res": "64", "model": "vaegan"}),
    ]:
        assert job_fingerprint(params, rule, wildcards) == job_fingerprint(changed, rule, wildcards)
    # Level k holds levels k..K: the finest level's KL weight concerns level 0 alone.
    finer = deep_merge(params, {"lapcvae": {"64": {"kl_weights": [0.5, *params["lapcvae"]["64"]["kl_weights"][1:]]}}})
    level = {"res": "64", "variant": "lapcvae"}
    assert job_fingerprint(params, "train_level", {**level, "level": "0"}) != job_fingerprint(
        finer, "train_level", {**level, "level": "0"}
    )
    assert job_fingerprint(params, "train_level", {**level, "level": "1"}) == job_fingerprint(
        finer, "train_level", {**level, "level": "1"}
    )


def test_evaluation_reruns_only_for_the_eval_settings_it_reads() -> None:
    params = load_params()
    job = ("evaluate", {"res": "64", "model": "vae"})
    neighbours = deep_merge(params, {"eval": {"neighbours": {"k": 3}}})
    assert job_fingerprint(params, *job) == job_fingerprint(neighbours, *job)
    per_resolution = ("neighbours", {"res": "64"})
    assert job_fingerprint(params, *per_resolution) != job_fingerprint(neighbours, *per_resolution)
    samples = deep_merge(params, {"eval": {"samples": 8}})
    assert job_fingerprint(params, *job) != job_fingerprint(samples, *job)


def test_a_celeba_zip_goes_through_the_dag_with_one_override_file(tmp_path: Path) -> None:
    """The real-data path of the DAG (fetch_celeba -> prepare) on a tiny CelebA-format zip built here."""
    from test_data_celeba import NAMES, build_zip, md5_of

    archive = build_zip(tmp_path / "img_align_celeba.zip")
    override = tmp_path / "celeba.yaml"
    override.write_text(yaml.safe_dump(
        {"data": {"source": "celeba", "test_fraction": 0.34, "validation_fraction": 0.25,  # 6 images: 2 test, 1 val
                  "celeba": {"archive": str(archive), "md5": md5_of(archive)}}}
    ))
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    run("snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "1",
        "data/prepared/manifest.json", "--configfile", str(override))
    manifest = yaml.safe_load((workdir / "data/prepared/manifest.json").read_text())
    assert manifest["source"] == "celeba"
    assert manifest["counts"]["total"] == len(NAMES)
    assert sorted(path.name for path in (workdir / "data/raw/celeba/img_align_celeba").iterdir()) == NAMES


def test_runs_with_other_overrides_never_change_the_params_a_job_reads(tmp_path: Path) -> None:
    """Each configuration gets its own resolved params file, named by its content."""
    (tmp_path / "params.yaml").write_bytes((REPO / "params.yaml").read_bytes())
    for extra in ([], ["--configfile", str(REPO / "config/paper.yaml")], []):
        run("snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", *extra)
    resolved = {path.name: yaml.safe_load(path.read_text()) for path in (tmp_path / ".snakemake/lapcvae").iterdir()}
    expected = [load_params(), load_params("config/paper.yaml")]
    assert len(resolved) == 2
    assert sorted(resolved.values(), key=lambda p: p["data"]["source"]) == sorted(expected,
                                                                                  key=lambda p: p["data"]["source"])
