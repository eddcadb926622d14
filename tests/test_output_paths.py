"""No output overlaps the code, the raw data or another output: configured roots (`paths.*`) and every command's
output options are refused, with one line naming the path and the fix, before any work; `atomic_directory`
refuses to replace a folder that holds code or raw images (core/paths.py)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import copy_repository
from test_reliability import ENV, lapcvae_cli, run_prepare, write_faces

from core import atomic
from core import paths as core_paths
from core.params import ParamsError, deep_merge, load_params, read_yaml, validate

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project's files, where the commands below run."""
    return copy_repository(tmp_path_factory.mktemp("project"))


def with_paths(**paths: str) -> dict:
    return deep_merge(read_yaml(REPO / "params.yaml"), {"paths": paths})


@pytest.mark.parametrize(("paths", "words"), [
    ({"prepared": "data"}, "paths.prepared: data would hold or replace the project's"),
    ({"results": "."}, "paths.results: . would hold or replace the project's"),
    ({"raw": "core/schemas/.."}, "paths.raw: core/schemas/.. would hold or replace"),
    ({"results": "data/prepared"}, "paths.prepared: data/prepared is paths.results"),
    ({"results": "data"}, "paths.results: data would hold or replace"),
    ({"raw": "results/raw"}, "paths.results: results holds paths.raw"),
    ({"prepared": "data/raw/prepared"}, "paths.raw: data/raw holds paths.prepared"),
])
def test_overlapping_roots_are_refused_when_params_load(paths, words):
    with pytest.raises(ParamsError) as error:
        validate(with_paths(**paths))
    assert words in str(error.value) and "\n" not in str(error.value)


def test_the_default_and_separate_roots_pass():
    validate(with_paths(raw="/tmp/lapcvae-raw", prepared="/tmp/lapcvae-prepared", results="runs/a"))
    assert load_params()["paths"]["prepared"] == "data/prepared"


def test_atomic_directory_refuses_a_folder_holding_code(tmp_path):
    target = tmp_path / "data"
    (target / "package").mkdir(parents=True)
    (target / "package" / "module.py").write_text("VALUE = 1\n")
    with pytest.raises(ValueError, match=r"holds code .*module\.py.*pass a folder of its own"), \
            atomic.atomic_directory(target) as staging:
        (staging / "x").write_text("new")
    assert (target / "package" / "module.py").read_text() == "VALUE = 1\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["data"]  # no staging folder left


def test_atomic_directory_replaces_raw_images_only_when_told(tmp_path):
    target = write_faces(tmp_path / "tree", [(8, 8)])
    with pytest.raises(ValueError, match=r"holds raw data .*img_align_celeba"), atomic.atomic_directory(target):
        pass
    assert (target / "img_align_celeba" / "000001.jpg").is_file()
    with atomic.atomic_directory(target, raw_data=True) as staging:  # a raw data set being rewritten
        (staging / "new").write_text("x")
    assert sorted(path.name for path in target.iterdir()) == ["new"]


def test_prepare_into_the_folder_that_holds_raw_data_and_code_deletes_nothing(tmp_path):
    data = tmp_path / "data"
    raw = write_faces(data / "raw" / "synthetic", [(178, 218)] * 10)
    (data / "__init__.py").write_text("")
    with pytest.raises(ValueError, match="pass a folder of its own"):
        run_prepare(raw, data)
    assert len(list((raw / "img_align_celeba").iterdir())) == 10 and (data / "__init__.py").is_file()


@pytest.mark.parametrize(("argv", "words"), [
    (["generate-faces", "--count", "2", "--out", "data/raw"], "--out data/raw: it is paths.raw itself"),
    (["generate-faces", "--count", "2", "--out", "results"], "--out results: it is paths.results itself"),
    (["generate-faces", "--count", "2", "--out", "core"], "--out core: it would hold or replace the project's"),
    (["prepare", "--raw", "data/raw/synthetic", "--out", "data"], "--out data: it would hold or replace"),
    (["prepare", "--raw", "data/raw/synthetic", "--out", "results"], "--out results: it is paths.results itself"),
    (["prepare", "--raw", "data/raw/synthetic", "--out", "."], "--out .: it would hold or replace"),
    (["export-study", "--out", "results"], "--out results: it is paths.results itself"),
    (["export-study", "--out", "data/raw/synthetic/study"], "it lies inside the raw data"),
    (["sample", "--checkpoint", "x.pt", "--out", "core/params.py"], "--out core/params.py: it would hold or"),
    (["evaluate", "--res", "16", "--model", "vae", "--checkpoint", "x.pt", "--test", "t.npy", "--out-dir",
      "data/raw/synthetic", "--per-image", "results/p.csv"], "--out-dir data/raw/synthetic: it lies inside the raw"),
])
def test_command_outputs_that_overlap_are_refused_before_any_work(argv, words, project, monkeypatch):
    monkeypatch.chdir(project)  # in a copy: a regression would damage the copy, not this checkout
    monkeypatch.setattr(core_paths, "REPO_ROOT", project)
    message = lapcvae_cli(*argv)
    assert words in message
    assert (project / "core" / "paths.py").is_file() and not (project / "results").exists()


def test_prepare_out_data_in_a_project_copy_keeps_the_package_and_the_images(tmp_path):
    """The case that deleted `data/` and the raw images: `lapcvae prepare --out data` run in the project."""
    copy_repository(tmp_path)
    raw = write_faces(tmp_path / "data" / "raw" / "synthetic", [(178, 218)] * 30)
    result = subprocess.run(["lapcvae", "prepare", "--raw", "data/raw/synthetic", "--out", "data"], cwd=tmp_path,
                            env={**ENV, "PYTHONPATH": str(tmp_path)}, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "--out data: it would hold or replace" in result.stderr
    assert (tmp_path / "data" / "prepare.py").is_file()
    assert len(os.listdir(raw / "img_align_celeba")) == 30
