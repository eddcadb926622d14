"""Training seeds (params `seeds`): the DAG trains and scores every model once per seed, Table 1 reads them all.

The first seed keeps a one-seed study's paths; further seeds go under results/seeds/{seed}/ (core/registry.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CORES, SmokeRun, run_command, smoke_copy

from core import registry
from core.params import load_params
from core.registry import checkpoint, level_checkpoint, seed_results
from eval.references import build_references
from training.loop import paired_seeds
from workflow.pipeline import job_fingerprint, levels

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def dry_run(*configfiles: str) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["snakemake", "-n", "--forceall", "-p", "--configfile", *configfiles], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def job_counts(output: str) -> dict[str, int]:
    table = output.split("Job stats:")[1]
    return {name: int(count) for name, count in re.findall(r"^(\w+)\s+(\d+)$", table, flags=re.MULTILINE)}


def test_the_first_seed_keeps_the_one_seed_layout_and_further_seeds_get_their_own() -> None:
    assert seed_results("results", 0, [0, 1, 2]) == "results"
    assert seed_results("results", 2, [0, 1, 2]) == "results/seeds/2"
    assert seed_results("out", 7, [7]) == "out"
    with pytest.raises(ValueError, match="not one of params seeds"):
        seed_results("results", 3, [0, 1, 2])


def test_three_seeds_train_every_model_three_times_and_table1_reads_all_of_them() -> None:
    params = load_params("config/smoke.yaml", "config/seeds3.yaml")
    assert params["seeds"] == [0, 1, 2]
    three = dry_run("config/smoke.yaml", "config/seeds3.yaml")
    counts = job_counts(three)
    n_res = len(params["data"]["resolutions"])
    levels = sum(params["lapcvae"][str(res)]["levels"] for res in params["data"]["resolutions"])
    # each model at the resolutions its params section has (core/registry.py models_at)
    runs = [registry.models_at(params, res) for res in params["data"]["resolutions"]]
    models = sum(len(names) for names in runs)
    one_job = sum(len(set(registry.trained_by(registry.TRAIN_ONE_JOB)) & set(names)) for names in runs)
    single = {"train_level": 2 * levels - n_res, "train_baseline": one_job, "retrain_m": n_res, "evaluate": models,
              "face_check": models}
    first = job_counts(dry_run("config/smoke.yaml"))
    for rule, count in single.items():
        assert first[rule] == count, f"{rule}: a one-seed run's jobs"
        assert counts[rule] == 3 * count, f"{rule}: every job once per seed"
    # Data, split, the data-only references, figures, neighbours, editing and the study stay single.
    for rule in ("generate_faces", "prepare", "table", "report", "export_study"):
        assert counts[rule] == 1
    for rule in ("references", "face_check_references", "figures", "neighbours", "edit_coarse"):
        assert counts[rule] == n_res
    assert counts["seed_references"] == 2 * n_res  # LapCVAE's coarsest level alone, for seeds 1 and 2
    # The first seed's files are where they always were; the others under results/seeds/{seed}/.
    assert checkpoint("results", 64, "vae") in three
    assert "results/seeds/1/models/64/vae/model.pt" in three and "results/seeds/2/models/64/lapcvae/level0.pt" in three
    # The table reads every seed's folders, in the order of `seeds`.
    table = next(line for line in three.splitlines() if "lapcvae table" in line)
    assert ("--eval-dir results/eval results/seeds/1/eval results/seeds/2/eval --per-image-dir "
            "results/metrics/per_image results/seeds/1/metrics/per_image results/seeds/2/metrics/per_image "
            "--seeds 0 1 2") in table


# Dry-runs the DAG with Snakemake's dry-run executor recording each job's rule, files, wildcards and params: what
# a dry run's printout does not show (the fingerprint Snakemake's params trigger compares, seed_params).
JOB_RECORDER = """
import json, sys
from snakemake.cli import main
from snakemake.executors import dryrun

jobs, run_job = [], dryrun.Executor.run_job

def record(self, job):
    jobs.append({"rule": job.rule.name, "output": list(map(str, job.output)), "log": list(map(str, job.log)),
                 "wildcards": dict(job.wildcards_dict), "fingerprint": job.params.get("fingerprint"),
                 "seed_params": job.params.get("seed_params")})
    run_job(self, job)

dryrun.Executor.run_job = record
out, sys.argv = sys.argv[1], ["snakemake", "-n", "--forceall", *sys.argv[2:]]
try:
    main()
finally:
    with open(out, "w") as file:
        json.dump(jobs, file)
"""


def dry_run_jobs(tmp_path: Path, *configfiles: str) -> list[dict]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = tmp_path / "jobs.json"
    result = subprocess.run([sys.executable, "-c", JOB_RECORDER, str(out), "--configfile", *configfiles], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text())


def test_one_rule_per_step_writes_each_seeds_files_in_its_folder_with_its_seed(tmp_path: Path) -> None:
    """A `seed_path` wildcard, not a copy of each rule per seed: each further seed's jobs write under
    results/seeds/{seed}/ (the first seed's under results/), read that seed from their params file and hash it in
    their fingerprint; wildcards other than the folder are those of the first seed's job, so a seed's fingerprint
    differs from the first seed's by the seed alone."""
    params = load_params("config/smoke.yaml", "config/seeds3.yaml")
    seeds, results = params["seeds"], params["paths"]["results"]
    jobs = dry_run_jobs(tmp_path, "config/smoke.yaml", "config/seeds3.yaml")
    assert not [job["rule"] for job in jobs if re.search(r"_seed\d+$", job["rule"])]
    by_seed: dict[int, list[dict]] = {seed: [] for seed in seeds}
    for job in jobs:
        if "seed_path" not in job["wildcards"]:
            assert not any(path.startswith(f"{results}/seeds/") for path in job["output"]), job["rule"]
            continue
        folder = results + job["wildcards"]["seed_path"]
        seed = next(seed for seed in seeds if seed_results(results, seed, seeds) == folder)
        by_seed[seed].append(job)
        if seed == seeds[0]:
            assert folder == results and not any("seeds/" in path for path in job["output"] + job["log"])
        else:
            assert all(path.startswith(f"{results}/seeds/{seed}/") for path in job["output"]), job["output"]
            assert all(f"/seeds/{seed}/" in path for path in job["log"]), job["log"]
        if seed == params["seed"]:
            assert job["seed_params"] == []
        else:
            flag, override = job["seed_params"]
            assert flag == "--params" and yaml.safe_load((REPO / override).read_text()) == {"seed": seed}
        rule = "references" if job["rule"] == "seed_references" else job["rule"]
        wildcards = {name: value for name, value in job["wildcards"].items() if name != "seed_path"}
        assert job["fingerprint"] == job_fingerprint({**params, "seed": seed}, rule, wildcards)
        if seed != params["seed"]:
            assert job["fingerprint"] != job_fingerprint(params, rule, wildcards)
    counts = [sorted(job["rule"] for job in by_seed[seed] if job["rule"] != "seed_references") for seed in seeds]
    assert counts[0] and counts[0] == counts[1] == counts[2], "every seed trains and scores the same models"
    logs = [path for job in jobs for path in job["log"]]
    assert len(logs) == len(set(logs)), "one log per job"


def test_a_further_seed_computes_only_the_reference_that_depends_on_training() -> None:
    params = load_params("config/smoke.yaml")
    images = np.random.default_rng(0).integers(0, 256, size=(12, 3, 64, 64), dtype=np.uint8)
    assert list(build_references(params, 64, images, None)) == ["mean_face", "pca"]
    assert list(build_references(params, 64, images, None, names=["pca"])) == ["pca"]
    assert build_references(params, 64, images, None, names=["lapcvae_coarsest"]) == {}
    with pytest.raises(ValueError, match="unknown references"):
        build_references(params, 64, images, None, names=["median_face"])


@pytest.mark.slow
def test_each_seeds_jobs_train_with_their_own_seed(smoke_run: SmokeRun, tmp_path: Path) -> None:
    """Run for real, not dry: every seed's coarsest LapCVAE level trains with that seed (checkpoint meta and
    weights differ), the first seed's with the params seed."""
    root = smoke_copy(tmp_path / "seeds")
    params = load_params("config/smoke.yaml")
    for folder in (params["paths"]["raw"], params["paths"]["prepared"]):  # the smoke study's faces and split,
        shutil.copytree(smoke_run.root / folder, root / folder)  # without Snakemake's records
    seeds, level = [params["seed"], params["seed"] + 1], levels(params, 64) - 1
    (root / "seeds.yaml").write_text(f"seeds: {seeds}\n")
    paths = [level_checkpoint(seed_results(params["paths"]["results"], seed, seeds), 64, "lapcvae", level)
             for seed in seeds]
    run_command("snakemake", "--cores", CORES, *paths, "--configfile", "seeds.yaml", cwd=root)
    trained = [torch.load(root / path, weights_only=False) for path in paths]
    assert [each["meta"]["seed"] for each in trained] == [
        paired_seeds(seed, 64)[1] for seed in seeds]
    first, second = (each["state_dict"] for each in trained)
    assert any(not torch.equal(first[name], second[name]) for name in first)


def test_one_seed_gives_every_model_the_same_data_order_and_initialisation(tmp_path: Path) -> None:
    """Seeds pair: the VAE, the VAE at LapCVAE's FLOPs and LapCVAE's coarsest level train from one seed with the
    same data order and noise, and models of one shape start from the same weights; another seed changes both."""
    from training.baseline_jobs import build_baseline, train_baseline
    from training.lapcvae_jobs import train_level

    params = load_params("config/smoke.yaml")
    params["device"] = "cpu"
    images = np.random.default_rng(0).integers(0, 256, (8, 3, 64, 64), dtype=np.uint8)
    params["vae"]["64"]["train"]["epochs"] = 1
    trained = {name: train_baseline(params, name, 64, images, tmp_path / f"{name}.pt")[1] for name in
               ("vae", "vae_equal_flops")}
    _, level_meta = train_level(params, 64, "lapcvae", levels(params, 64) - 1, None, images, tmp_path / "level.pt")
    assert trained["vae"]["seed"] == trained["vae_equal_flops"]["seed"] == level_meta["seed"]
    initial = {}
    for seed in (params["seed"], params["seed"] + 1):
        torch.manual_seed(paired_seeds(seed, 64)[0])
        initial[seed] = build_baseline(params, "vae", 64).state_dict()
    torch.manual_seed(paired_seeds(params["seed"], 64)[0])
    same = build_baseline(params, "vae_equal_flops", 64).state_dict()
    first, second = initial.values()
    assert all(torch.equal(first[name], same[name]) for name in first)
    assert any(not torch.equal(first[name], second[name]) for name in first)
    assert paired_seeds(params["seed"], 64) != paired_seeds(params["seed"] + 1, 64)
