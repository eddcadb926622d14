"""Check dvc.yaml against the Snakemake DAG, so that the two descriptions of the pipeline cannot drift apart.

dvc.yaml is written by hand, templated over data.resolutions, the models and the figures (core/figures.py);
Snakemake's rules stay the one definition of how each artefact is made (every DVC stage runs `snakemake` on its
targets). This compares DVC's
rendering of dvc.yaml (DVC's Python API, with the folder's params.yaml) with Snakemake's dry run of the same
params (`snakemake -n --forceall`, as printed) and reports every difference:
  - artefacts: each file a Snakemake job writes belongs to exactly one DVC out (the file or a folder above it),
    and each DVC out holds at least one of them;
  - commands: each stage's `snakemake` targets (files, an aggregate rule such as `models_64`, or `--until RULE`)
    build every job whose files the stage declares, and ask for nothing the stage does not declare;
  - deps: every file those jobs read from other stages is a dep (the file or a folder above it), and every file
    dep is read by one of them;
  - code: every repository file its jobs run (workflow/pipeline.py code_used: their command's imports and the
    model classes they load) is held by a code dep (the file, or a package folder above it), and every code dep
    holds one of them;
  - params: the stage's params cover the same leaf keys as its jobs' rerun fingerprints (PARAMS_USED);
  - the `models` var lists core/registry.py's models that run at every resolution (core/registry.py models_at).

    python -m workflow.dvc_check            # in the repository root (or give a folder); exit 1 on differences
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core import registry
from workflow.pipeline import code_used, params_used

SNAKEMAKE = ["python", "-m", "workflow.dvc_stage", "--cores", "all"]  # workflow/dvc_stage.py runs snakemake


@dataclass
class Job:
    """One job of Snakemake's dry run."""

    rule: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    wildcards: dict[str, str] = field(default_factory=dict)


@dataclass
class Stage:
    """One stage of dvc.yaml as DVC renders it."""

    name: str
    cmd: str
    deps: list[str]
    params: list[str]
    outs: list[str]


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of `snakemake -n` output: `rule NAME:` blocks of indented `key: value` lines."""
    jobs: list[Job] = []
    current: Job | None = None
    for line in text.splitlines():
        start = re.fullmatch(r"(?:local)?rule (\w+):", line.strip())
        if start and not line.startswith(" "):
            current = Job(start.group(1))
            jobs.append(current)
        elif current is not None and line.startswith("    "):
            key, _, value = line.strip().partition(": ")
            if key in ("input", "output"):
                setattr(current, f"{key}s", [item for item in value.split(", ") if item])
            elif key == "wildcards":
                current.wildcards = dict(item.split("=", 1) for item in value.split(", "))
        else:
            current = None
    return jobs


def snakemake_jobs(root: Path, targets: Iterable[str]) -> list[Job]:
    """Every job Snakemake would run for `targets` with the folder's params, nothing built yet."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["snakemake", "-n", "--forceall", *targets], cwd=root, env=env, capture_output=True,
                            text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"snakemake -n failed in {root}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return parse_dry_run(result.stdout + "\n" + result.stderr)


def dvc_stages(root: Path, dvc_file: str | None = "dvc.yaml") -> list[Stage]:
    """The stages of one dvc.yaml (None: of all) with templates resolved, as `dvc repro` would run them."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return [
            Stage(
                name=stage.name,
                cmd=stage.cmd,
                deps=[dep.def_path for dep in stage.deps if not isinstance(dep, ParamsDependency)],
                params=[key for dep in stage.deps if isinstance(dep, ParamsDependency) for key in dep.params],
                outs=[out.def_path for out in stage.outs],
            )
            for stage in repo.index.stages
            if dvc_file is None or Path(stage.dvcfile.path).resolve() == (root / dvc_file).resolve()
        ]


def covers(path: str, file: str) -> bool:
    """Whether a DVC path (a file or a folder) holds `file`."""
    return file == path or file.startswith(path.rstrip("/") + "/")


# The package that also holds the data (data/raw, data/prepared): a stage lists its modules, never the folder.
DATA_PACKAGE = "data"


def is_code(root: Path, dep: str) -> bool:
    """Whether a dep is code: a Python file, or a package folder other than `data`."""
    return dep.endswith(".py") or (dep != DATA_PACKAGE and (root / dep / "__init__.py").is_file())


def leaves(params: Mapping[str, Any], key: str) -> set[str]:
    """The leaf keys under a dotted params key (itself if its value is not a mapping)."""
    value: Any = params
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return {f"{key} (missing from params.yaml)"}
        value = value[part]
    if isinstance(value, Mapping):
        return set().union(*(leaves(params, f"{key}.{child}") for child in value)) if value else {key}
    return {key}


def models_var_errors(models: list[str], params: Mapping[str, Any], stage_names: set[str]) -> list[str]:
    """The `models` var: core/registry.py's models in its order, each running at every resolution of params.yaml;
    every other registry model has an `evaluate_<model>` stage of its own (over its params section's entries)."""
    errors = []
    if models != [name for name in registry.names() if name in models]:
        errors.append(f"dvc.yaml: vars `models` is {models}: list core/registry.py's models ({registry.names()}) "
                      "there, in its order")
    resolutions = [int(res) for res in params["data"]["resolutions"]]
    for name in registry.names():
        if name in models and registry.resolutions_of(params, name) != resolutions:
            errors.append(f"dvc.yaml: vars `models` lists {name}, which runs at {registry.resolutions_of(params, name)}"
                          f" px only (its params section's entries): give it an `evaluate_{name}` stage over them, "
                          "as `evaluate_pixelvae`, instead")
        elif name not in models and f"evaluate_{name}" not in stage_names:
            errors.append(f"dvc.yaml: {name} (core/registry.py) is neither in vars `models` nor has an "
                          f"`evaluate_{name}` stage: add it to vars `models`, in the registry's order")
    return errors


def other_resolutions_of_partial_model(params: Mapping[str, Any], key: str, resolutions: set[str]) -> bool:
    """Whether a leaf key is `<section>.<res>...` of a model that does not run at every resolution, at a
    resolution other than `resolutions`."""
    section, _, rest = key.partition(".")
    res = rest.partition(".")[0]
    partial = {registry.spec(name).params_section for name in registry.names()
               if registry.resolutions_of(params, name) != [int(r) for r in params["data"]["resolutions"]]}
    return bool(resolutions) and section in partial and res.isdigit() and res not in resolutions


def command_targets(cmd: str) -> tuple[list[str], list[str]] | None:
    """(targets, --until rules) of a `python -m workflow.dvc_stage --cores all ...` command (snakemake with those
    arguments), None for any other command."""
    words = shlex.split(cmd)
    if words[:len(SNAKEMAKE)] != SNAKEMAKE:
        return None
    targets, until, into = [], [], None
    for word in words[len(SNAKEMAKE):]:
        if word == "--until":
            into = until
        elif word.startswith("-"):
            return None
        else:
            (into if into is not None else targets).append(word)
    return targets, until


def upstream(jobs: Iterable[int], all_jobs: list[Job], producer: Mapping[str, int]) -> set[int]:
    """The jobs given and every job they (transitively) read from."""
    seen: set[int] = set()
    todo = list(jobs)
    while todo:
        index = todo.pop()
        if index not in seen:
            seen.add(index)
            todo += [producer[path] for path in all_jobs[index].inputs if path in producer]
    return seen


# Each DVC pipeline and the Snakemake target it mirrors: the default run, and the ablations (`snakemake
# ablations`), kept in a dvc.yaml of their own so that a plain `dvc repro` does not start them.
PIPELINES = {"dvc.yaml": "all", "workflow/ablations/dvc.yaml": "ablations"}


def check(root: Path, dvc_file: str = "dvc.yaml") -> list[str]:
    """Every difference between one dvc.yaml and its Snakemake target in `root` (empty if none)."""
    root = root.resolve()
    errors: list[str] = []
    dvc_yaml = yaml.safe_load((root / dvc_file).read_text())
    models = next((entry["models"] for entry in dvc_yaml.get("vars", []) if isinstance(entry, dict)
                   and "models" in entry), None)
    params = yaml.safe_load((root / "params.yaml").read_text())
    stages = dvc_stages(root, dvc_file)
    if dvc_file == "dvc.yaml":
        errors += models_var_errors(models or [], params, {stage.name.partition("@")[0] for stage in stages})
    commands = {}
    for stage in stages:
        commands[stage.name] = command_targets(stage.cmd)
        if commands[stage.name] is None:
            errors.append(f"{stage.name}: cmd {stage.cmd!r} is not `{shlex.join(SNAKEMAKE)} TARGET...` or "
                          f"`{shlex.join(SNAKEMAKE)} --until RULE...`")
    aggregate = sorted({target for parsed in commands.values() if parsed for target in parsed[0]
                        if "/" not in target and "." not in target})
    jobs = snakemake_jobs(root, [PIPELINES[dvc_file], *aggregate])
    producer = {path: index for index, job in enumerate(jobs) for path in job.outputs}

    # Artefacts: each Snakemake output has one DVC out, each DVC out holds some output. The files a second
    # pipeline reads from the first (the prepared data) are the first's outs.
    every = stages if dvc_file == "dvc.yaml" else dvc_stages(root, None)
    owner: dict[str, str] = {}
    for path in producer:
        holders = [stage.name for stage in every for out in stage.outs if covers(out, path)]
        if len(holders) != 1:
            errors.append(f"{path} (rule {jobs[producer[path]].rule}) is an out of {len(holders)} DVC stages "
                          f"{holders}: declare it in exactly one")
        if holders:
            owner[path] = holders[0]
    family_reads: dict[str, set[str]] = {}  # template name -> what its stages' jobs read
    unread: list[tuple[str, str]] = []  # (stage, a dep its own jobs do not read)
    family_runs: dict[str, set[str]] = {}  # template name -> the code its stages' jobs run
    unrun: list[tuple[str, str]] = []  # (stage, a code dep)
    for stage in stages:
        for out in stage.outs:
            if not any(covers(out, path) for path in producer):
                errors.append(f"{stage.name}: out {out} is no file of the Snakemake DAG")

    for stage in stages:
        owned = {producer[path] for path, name in owner.items() if name == stage.name}
        parsed = commands[stage.name]
        if parsed is not None:
            targets, until = parsed
            asked: set[int] = set()
            for target in targets:
                if target in producer:
                    asked.add(producer[target])
                    if owner.get(target) != stage.name:
                        errors.append(f"{stage.name}: cmd asks for {target}, which is not one of its outs")
                else:
                    rules = [index for index, job in enumerate(jobs) if job.rule == target and not job.outputs]
                    if not rules:
                        errors.append(f"{stage.name}: cmd target {target} is no file or aggregate rule of the DAG")
                    for index in rules:
                        asked.add(index)
                        errors += [f"{stage.name}: cmd asks for {path} (via {target}), which is not one of its outs"
                                   for path in jobs[index].inputs if owner.get(path) != stage.name]
            for rule in until:
                matching = [index for index, job in enumerate(jobs) if job.rule == rule]
                if not matching or not set(matching) <= owned:
                    errors.append(f"{stage.name}: --until {rule}: its jobs must write this stage's outs")
                asked |= set(matching)
            missing = owned - upstream(asked, jobs, producer)
            errors += [f"{stage.name}: its cmd does not build {jobs[index].outputs} (rule {jobs[index].rule})"
                       for index in sorted(missing)]

        # Deps: what the stage's jobs read from elsewhere, and nothing else.
        written = {path for index in owned for path in jobs[index].outputs}
        read = {path for index in owned for path in jobs[index].inputs if path not in written}
        file_deps = [dep for dep in stage.deps if not is_code(root, dep)]
        unheld = sorted(path for path in read if not any(covers(dep, path) for dep in file_deps))
        if unheld:
            errors.append(f"{stage.name}: its jobs read {len(unheld)} file(s) that no dep holds: "
                          + ", ".join(unheld[:4]) + (", ..." if len(unheld) > 4 else ""))
        family_reads.setdefault(stage.name.partition("@")[0], set()).update(read)
        unread += [(stage.name, dep) for dep in file_deps if not any(covers(dep, path) for path in read)]

        # Code: every file its jobs run is held by a code dep; a dep that holds none is checked per template below.
        runs = {name for index in owned for name in code_used(jobs[index].rule, jobs[index].wildcards, root)}
        code = [dep for dep in stage.deps if is_code(root, dep)]
        unheld_code = sorted(name for name in runs if not any(covers(dep, name) for dep in code))
        if unheld_code:
            errors.append(f"{stage.name}: its jobs run {len(unheld_code)} file(s) that no code dep holds "
                          f"(workflow/pipeline.py code_used): " + ", ".join(unheld_code[:6])
                          + (", ..." if len(unheld_code) > 6 else ""))
        family_runs.setdefault(stage.name.partition("@")[0], set()).update(runs)
        unrun += [(stage.name, dep) for dep in code]

        expected_keys = {key for index in owned
                         for key in params_used(jobs[index].rule, jobs[index].wildcards, params)}
        expected = set().union(set(), *(leaves(params, key) for key in expected_keys))
        declared = set().union(set(), *(leaves(params, key) for key in stage.params))
        # A model that runs at only some resolutions has its whole section in a per-resolution stage (DVC cannot
        # template a key that exists at some resolutions only): its entries at the stage's other resolutions
        # may be declared too (a change there only reruns Snakemake, which finds nothing to do).
        stage_res = {jobs[index].wildcards["res"] for index in owned if "res" in jobs[index].wildcards}
        declared -= {key for key in declared - expected if other_resolutions_of_partial_model(params, key, stage_res)}
        if declared != expected:
            errors.append(f"{stage.name}: params miss {sorted(expected - declared)} and have extra "
                          f"{sorted(declared - expected)} (its jobs' fingerprints: {sorted(expected_keys)})")
    # A templated stage's deps are one list for all its items: a dep that one item's jobs do not read (a model
    # without a fitted prior) is fine while another item of the template reads inside it.
    errors += [f"{name}: dep {dep} holds nothing its jobs read" for name, dep in unread
               if not any(covers(dep, path) for path in family_reads[name.partition("@")[0]])]
    errors += [f"{name}: code dep {dep} holds no file its jobs run (workflow/pipeline.py code_used)"
               for name, dep in dict.fromkeys(unrun)
               if not any(covers(dep, path) for path in family_runs[name.partition("@")[0]])]
    return errors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, default=Path.cwd(), help="repository folder (default: .)")
    args = parser.parse_args(argv)
    for dvc_file, target in PIPELINES.items():
        errors = check(args.root, dvc_file)
        if errors:
            sys.exit(f"{dvc_file} differs from the Snakemake DAG:\n  " + "\n  ".join(errors))
        print(f"{dvc_file} follows the Snakemake target `{target}` of {args.root}/params.yaml")


if __name__ == "__main__":
    main()
