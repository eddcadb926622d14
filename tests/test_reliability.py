"""Faults a new user meets (issue 13): each must end in one clear line naming the file and the fix, with nothing
half-written, or be refused or warned about with its numbers. Tiny data and models only; the one real kill of
Snakemake mid-run is in tests/test_end_to_end.py, plus a cheap one here on the first job of the smoke DAG."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import copy_repository
from PIL import Image

from baselines.vae import VAE
from core.params import ParamsError, deep_merge, load_params, validate
from data.celeba import extract
from data.prepare import Crop, prepare
from eval.study_analysis import csv_records
from models import checkpoint
from models.lapcvae import LapCVAE
from workflow import cli, locks

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(REPO)}
CROP = Crop(top=40, left=15, size=148)


def tiny_vae(resolution: int = 16) -> VAE:
    return VAE(resolution=resolution, latent_dim=4, widths=[4, 8], kl_weight=0.01)


def tiny_lapcvae(resolution: int = 16) -> LapCVAE:
    return LapCVAE(resolution=resolution, levels=2, latent_dims=[2, 2], kl_weights=[1.0, 1.0], widths=[4],
                   feature_size=8, m_hidden=4, use_m=True)


def lapcvae_cli(*argv: str) -> str:
    """Run a `lapcvae` command in-process; return the message it exits with (it must exit with one)."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(list(argv))
    message = str(exit_info.value.code)
    assert "\n" not in message and "Traceback" not in message
    return message


# ----- item 4: commands check a checkpoint's kind and resolution --------------------------------------------
def evaluate_args(tmp_path: Path, model: str, res: int, ckpt: Path) -> list[str]:
    np.save(tmp_path / "test.npy", np.zeros((4, 3, res, res), dtype=np.uint8))
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"device": "cpu", "eval": {"batch_size": 2, "bootstrap_samples": 10,
                                                                 "samples": 2}}))
    return ["evaluate", "--params", str(params), "--res", str(res), "--model", model, "--checkpoint", str(ckpt),
            "--test", str(tmp_path / "test.npy"), "--out-dir", str(tmp_path / "out"),
            "--per-image", str(tmp_path / "per_image.csv")]


def test_evaluate_refuses_a_vae_checkpoint_passed_as_lapcvae(tmp_path):
    ckpt = tmp_path / "vae.pt"
    checkpoint.save_model(ckpt, tiny_vae())
    message = lapcvae_cli(*evaluate_args(tmp_path, "lapcvae", 16, ckpt))
    assert "vae model" in message and "lapcvae model was asked for" in message and str(ckpt) in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "per_image.csv").exists()


def test_evaluate_refuses_another_resolution_before_writing_anything(tmp_path):
    ckpt = tmp_path / "level0.pt"
    checkpoint.save_model(ckpt, tiny_lapcvae(resolution=32))
    message = lapcvae_cli(*evaluate_args(tmp_path, "lapcvae", 16, ckpt))
    assert "32 px model" in message and "16 px was asked for" in message
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_lapcvae_with_m_as_lapcvae_nom(tmp_path):
    ckpt = tmp_path / "level0.pt"
    checkpoint.save_model(ckpt, tiny_lapcvae())
    assert "use_m=True" in lapcvae_cli(*evaluate_args(tmp_path, "lapcvae_nom", 16, ckpt))


def test_stray_resume_file_is_not_taken_for_a_level(tmp_path):
    """Training time comes from the evaluated checkpoint's own metadata: no sibling file (a stray
    level1.pt.resume.pt once broke a level*.pt glob) is read."""
    folder = tmp_path / "lapcvae"
    checkpoint.atomic_save({"meta": {"train_seconds": 1.0, "pyramid_train_seconds": 3.0}}, folder / "level0.pt")
    checkpoint.atomic_save({"epoch": 3, "meta": {"train_seconds": 99.0}}, folder / "level1.pt.resume.pt")
    meta = torch.load(folder / "level0.pt", weights_only=True)["meta"]
    assert checkpoint.pyramid_train_seconds(meta) == 3.0


def test_load_model_checks_kind_and_resolution(tmp_path):
    ckpt = tmp_path / "model.pt"
    checkpoint.save_model(ckpt, tiny_vae())
    assert checkpoint.load_model(ckpt, expected_kind="vae", expected_resolution=16).config["resolution"] == 16
    with pytest.raises(ValueError, match="holds a vae model, but a vaegan model"):
        checkpoint.load_model(ckpt, expected_kind="vaegan")


# ----- item 5: schema holes ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("override", "key", "words"), [
    ({"train": {"lr": float("nan")}}, "train.lr", "not a finite number"),
    ({"train": {"lr": float("inf")}}, "train.lr", "not a finite number"),
    ({"train": {"batch_size": 16.0}}, "train.batch_size", "not of type 'integer'"),
    ({"lapcvae": {"64": {"train": {"epochs": 2.0}}}}, "lapcvae.64.train.epochs", "not of type 'integer'"),
])
def test_validation_rejects_non_finite_and_non_integral_values(override, key, words):
    with pytest.raises(ParamsError, match=words) as error:
        validate(deep_merge(load_params(), override))
    assert str(error.value).startswith(f"{key}:")


def test_yaml_nan_in_an_override_file_is_refused_by_the_command(tmp_path):
    override = tmp_path / "nan.yaml"
    override.write_text("train:\n  lr: .nan\n")
    assert "train.lr" in lapcvae_cli("sample", "--params", str(override), "--checkpoint", "x.pt",
                                     "--out", str(tmp_path / "s.npy"))


# ----- item 6: expected failures end in one line, nothing half-written ----------------------------------------
def test_disk_full_while_saving_a_checkpoint_names_it(tmp_path, monkeypatch):
    """torch.save's C++ writer fails with 'basic_ios::clear: iostream error' on a full disk."""
    def full_disk(obj, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 0))
    target = tmp_path / "models" / "model.pt"
    with pytest.raises(OSError) as error:
        checkpoint.save_model(target, tiny_vae())
    assert error.value.errno == errno.ENOSPC and str(target) in str(error.value)
    assert "free some space" in cli.describe_error(error.value)
    assert list(target.parent.iterdir()) == []  # no checkpoint, no temporary file


def test_file_size_limit_while_saving_a_checkpoint_is_one_clear_error(tmp_path):
    """A real torch.save failure: the file-size limit (ulimit -f) stops the write half way."""
    script = textwrap.dedent(f"""
        import resource, signal, sys, torch
        from models.checkpoint import save_model
        from baselines.vae import VAE
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
        try:
            save_model({str(tmp_path / "model.pt")!r}, VAE(resolution=16, latent_dim=4, widths=[4, 8], kl_weight=0.01))
        except OSError as error:
            sys.exit("OSError: " + str(error))
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=600)  # importing torch on a loaded CI machine can take minutes
    assert result.stderr.startswith("OSError: ") and "cannot write checkpoint" in result.stderr, result.stderr
    assert str(tmp_path / "model.pt") in result.stderr
    assert list(tmp_path.iterdir()) == []


def write_faces(folder: Path, sizes: list[tuple[int, int]]) -> Path:
    """JPEGs of the given (width, height) in a CelebA-format tree."""
    images = folder / "img_align_celeba"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index, (width, height) in enumerate(sizes, start=1):
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{index:06d}.jpg", quality=90)
    return folder


def run_prepare(raw: Path, out: Path, **options) -> dict:
    return prepare(raw, out, crop=CROP, resolutions=[16], test_fraction=0.2, seed=0, source="synthetic",
                   **options)


def test_disk_full_during_prepare_is_an_error_not_a_sigbus(tmp_path, monkeypatch):
    """Writing through a memory map onto a full disk kills the process with SIGBUS; the blocks are now reserved
    first, so the same full disk raises ENOSPC before any image is written."""
    raw = write_faces(tmp_path / "raw", [(178, 218)] * 10)

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)
    with pytest.raises(OSError, match="not enough free space") as error:
        run_prepare(raw, tmp_path / "prepared")
    assert error.value.errno == errno.ENOSPC and "paths.prepared" in str(error.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["raw"]  # no output, no temporary folder


def test_prepare_checks_free_space_before_writing(tmp_path, monkeypatch):
    raw = write_faces(tmp_path / "raw", [(178, 218)] * 10)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 10))
    with pytest.raises(OSError, match=r"MiB needed, 0\.0 MiB free"):
        run_prepare(raw, tmp_path / "prepared")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["raw"]


@pytest.mark.parametrize("content", [[1, 2, 3], {"kind": "vae", "config": {"resolution": 16}, "state_dict": {}},
                                     {"kind": "vae", "config": {"resolution": 16, "latent_dim": "x", "widths": 3},
                                      "state_dict": {}},
                                     {"kind": "vae", "config": [16], "state_dict": {}}])
def test_malformed_checkpoints_are_one_line_errors(tmp_path, content):
    ckpt = tmp_path / "odd.pt"
    torch.save(content, ckpt)
    message = lapcvae_cli("sample", "--checkpoint", str(ckpt), "--out", str(tmp_path / "out" / "s.npy"))
    assert str(ckpt) in message and ("retrain" in message or "lapcvae train-" in message)
    assert not (tmp_path / "out").exists()


def test_non_zip_archive_names_the_file(tmp_path):
    archive = tmp_path / "img_align_celeba.zip"
    archive.write_text("<html>Google Drive quota exceeded</html>")
    with pytest.raises(ValueError, match="is not a zip archive") as error:
        extract(archive, tmp_path / "out")
    assert str(archive) in str(error.value)
    assert not (tmp_path / "out").exists()


def test_decompression_bomb_image_names_the_file(tmp_path, monkeypatch):
    raw = write_faces(tmp_path / "raw", [(178, 218)] * 10)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 178 * 218 // 3)  # every image now exceeds twice the limit
    with pytest.raises(ValueError, match=r"000001\.jpg: cannot read this image.*decompression bomb"):
        run_prepare(raw, tmp_path / "prepared")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["raw"]
    png = tmp_path / "face.png"
    Image.new("RGB", (178, 218)).save(png)
    message = reconstruct_with_a_tiny_vae(tmp_path, png)
    assert str(png) in message and "decompression bomb" in message


def reconstruct_with_a_tiny_vae(tmp_path: Path, image: Path) -> str:
    """`lapcvae reconstruct` of one image file with an untrained 16 px VAE; the one line it exits with."""
    ckpt = tmp_path / "vae.pt"
    checkpoint.save_model(ckpt, tiny_vae())
    return lapcvae_cli("reconstruct", "--checkpoint", str(ckpt), "--images", str(image),
                       "--out", str(tmp_path / "r.png"))


def test_out_path_under_an_existing_file_is_one_line(tmp_path):
    ckpt = tmp_path / "vae.pt"
    checkpoint.save_model(ckpt, tiny_vae())
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder should be")
    message = lapcvae_cli("sample", "--checkpoint", str(ckpt), "--n", "2", "--out", str(blocker / "s" / "x.npy"))
    assert str(blocker) in message
    assert "is a file, not a folder" in message or "a file is in the way" in message
    assert blocker.read_text() == "a file where a folder should be"


def test_system_errors_get_the_file_and_the_fix():
    assert cli.describe_error(PermissionError(errno.EACCES, "Permission denied", "results/x.pt")) == (
        "results/x.pt: Permission denied; the folder is not writable: fix its permissions (or point paths.* / "
        "--out elsewhere) and rerun")
    assert "read-only" in cli.describe_error(OSError(errno.EROFS, "Read-only file system", "/mnt/x"))
    assert cli.describe_error(ValueError("checkpoint a.pt is ...; retrain")) == "checkpoint a.pt is ...; retrain"


def test_read_only_folder_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (the message is checked above)")
    ckpt = tmp_path / "vae.pt"
    checkpoint.save_model(ckpt, tiny_vae())
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        message = lapcvae_cli("sample", "--checkpoint", str(ckpt), "--n", "2", "--out", str(folder / "x.npy"))
    finally:
        folder.chmod(0o700)
    assert "not writable" in message


def test_latin1_study_csv_names_the_file(tmp_path):
    responses = tmp_path / "responses.csv"
    responses.write_bytes("pair_id,choice\n1,Réponse\n".encode("latin-1"))
    with pytest.raises(ValueError, match="is not UTF-8 text") as error:
        csv_records(responses, ["pair_id", "choice"], "responses")
    assert str(responses) in str(error.value) and "save it as UTF-8" in str(error.value)


# ----- item 8: silent oddities -----------------------------------------------------------------------------------
def test_three_images_are_refused_with_the_numbers(tmp_path):
    raw = write_faces(tmp_path / "raw", [(178, 218)] * 3)
    with pytest.raises(ValueError, match="3 images give a test split of 1.*at least 2 test images"):
        run_prepare(raw, tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()


def test_training_set_smaller_than_a_batch_is_warned_about(tmp_path, caplog):
    raw = write_faces(tmp_path / "raw", [(178, 218)] * 10)
    with caplog.at_level(logging.WARNING, logger="data.prepare"):
        run_prepare(raw, tmp_path / "prepared", batch_size=64)
    assert "8 training images are fewer than one batch (train.batch_size 64)" in caplog.text


def test_image_of_another_size_than_celeba_is_warned_about(tmp_path, caplog):
    raw = write_faces(tmp_path / "raw", [(178, 218)] * 9 + [(400, 500)])
    with caplog.at_level(logging.WARNING, logger="data.prepare"):
        run_prepare(raw, tmp_path / "prepared")
    assert "1 of 10 images are not CelebA's aligned 178x218" in caplog.text
    assert "000010.jpg is 400x500" in caplog.text and "(15, 40, 163, 188)" in caplog.text


# ----- item 2: curves survive a rerun under Snakemake; item 3: a rerun after a kill just works ------------------
@pytest.fixture(scope="module")
def smoke_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's files with the smoke params as params.yaml (like tests/test_end_to_end.py)."""
    root = tmp_path_factory.mktemp("repo")
    copy_repository(root)
    (root / "params.yaml").write_text(yaml.safe_dump(load_params("config/smoke.yaml"), sort_keys=False))
    return root


def test_snakemake_keeps_the_training_curve_when_it_reruns_a_job(smoke_repo):
    """What Snakemake deletes before it (re)runs a training job (its own code, on the real DAG): not the curve,
    which a resumed job continues from the resume step."""
    curve = smoke_repo / "results/models/64/lapcvae/level1.log.csv"
    curve.parent.mkdir(parents=True, exist_ok=True)
    curve.write_text("step,epoch,loss\n1,0,1.0\n2,0,0.9\n")
    script = textwrap.dedent("""
        from pathlib import Path
        from snakemake.api import SnakemakeApi
        from snakemake.settings.types import DAGSettings, OutputSettings, ResourceSettings
        with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
            workflow = api.workflow(resource_settings=ResourceSettings(cores=1),
                                    snakefile=Path("Snakefile")).dag(DAGSettings(forceall=True)).workflow_api._workflow
            workflow._prepare_dag(forceall=True, ignore_incomplete=True, lock_warn_only=True)
            workflow._build_dag()
            [job] = [job for job in workflow.dag.jobs if job.rule.name == "train_level"
                     and {key: value for key, value in job.wildcards_dict.items() if value}  # seed_path: ""
                         == {"res": "64", "variant": "lapcvae", "level": "1"}]
            workflow.async_run(job.remove_existing_output())
            print("removed outputs and logs of", job)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=smoke_repo, env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert "removed outputs and logs of" in result.stdout, result.stderr[-3000:]
    assert curve.read_text() == "step,epoch,loss\n1,0,1.0\n2,0,0.9\n"


def test_stale_lock_is_removed_only_when_no_run_is_left(tmp_path):
    lock_dir = tmp_path / ".snakemake" / "locks"
    lock_dir.mkdir(parents=True)
    (lock_dir / "0.output.lock").write_text("results/models/64/vae/model.pt\n")
    # A job of a run whose Snakemake was killed alone: it still runs in the folder and writes there.
    job = subprocess.Popen(["sleep", "60"], cwd=tmp_path, env={**os.environ, "LAPCVAE_PARAMS": "p.yaml"})
    try:
        time.sleep(0.2)
        assert job.pid in [pid for pid, _ in locks.workflow_processes(tmp_path)]
        assert not locks.clear_stale_locks(tmp_path)
        assert (lock_dir / "0.output.lock").exists()
    finally:
        job.kill()
        job.wait()
    assert locks.clear_stale_locks(tmp_path)
    assert not list(lock_dir.glob("*.lock"))
    assert not locks.clear_stale_locks(tmp_path)  # nothing to do


@pytest.mark.slow
def test_snakemake_killed_then_the_same_command_runs_again(smoke_repo):
    """SIGKILL of Snakemake and its jobs during the first job, then the same command, as the README says."""
    target = "data/raw/synthetic"
    first_output = smoke_repo / "first_run.txt"
    with first_output.open("w") as handle:
        process = subprocess.Popen(["snakemake", "--cores", "1", target], cwd=smoke_repo, env=ENV,
                                   start_new_session=True, stdout=handle, stderr=subprocess.STDOUT)
    lock_dir, job_log = smoke_repo / ".snakemake" / "locks", smoke_repo / "logs" / "generate_faces.log"
    deadline = time.monotonic() + 120
    while not (any(lock_dir.glob("*.lock")) and job_log.exists()) and process.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # Snakemake and its job, mid-job
    process.wait()
    assert any(lock_dir.glob("*.lock")), f"Snakemake ended before the kill:\n{first_output.read_text()[-3000:]}"
    result = subprocess.run(["snakemake", "--cores", "1", target], cwd=smoke_repo, env=ENV, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "removed the lock a killed Snakemake left" in result.stderr
    assert (smoke_repo / target / "list_attr_celeba.txt").is_file()

