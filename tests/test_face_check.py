"""The face check (eval/face_check.py, `lapcvae face-check`): OpenCV's face detector finds the synthetic faces as
`prepare` crops them, and not the sets that only share their pixels or colours; ratios are over the test split's
rate; bad input is refused naming the fix; the table carries each prior's ratio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from core.params import load_params
from core.registry import TRAINING_IMAGES
from data.faces import draw_face
from data.prepare import resize
from eval.face_check import face_rate, face_rate_of_test_split, face_summary, faces_found
from eval.table import FACE_CHECK_DIR, per_seed_table
from workflow.commands.faces import FITTED_SAMPLES, MEAN_FACE, face_check_main, face_check_references_main

SETTINGS = load_params()["eval"]["face_check"]
SIZE = 64


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    """60 synthetic faces (uint8 (60, 3, 64, 64)): the authors' crop of `draw_face`, resized as `prepare` does."""
    crops = np.stack([draw_face(3, index)[0][40:188, 15:163] for index in range(60)])  # (60, 148, 148, 3)
    return resize(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous(), SIZE).numpy()


def degraded_sets(faces: np.ndarray) -> dict[str, np.ndarray]:
    """Sets a generative model may draw that are not faces: the same pixels without a face's layout, its colours
    as a flat field, noise, and the faces upside down (the detector looks for upright frontal faces)."""
    rng = np.random.default_rng(0)
    return {
        "rows and columns shuffled": faces[:, :, rng.permutation(SIZE)][:, :, :, rng.permutation(SIZE)],
        "flat mean colour": np.broadcast_to(faces.mean(axis=(2, 3), keepdims=True), faces.shape).astype(np.uint8),
        "uniform noise": rng.integers(0, 256, faces.shape, dtype=np.uint8),
        "upside down": faces[:, :, ::-1].copy(),
    }


def test_faces_are_found_far_more_often_than_in_sets_that_are_not_faces(faces: np.ndarray) -> None:
    real = face_rate(faces, SETTINGS)
    assert real >= 0.5, f"the detector finds only {real:.2f} of the synthetic faces"
    for name, images in degraded_sets(faces).items():
        rate = face_rate(images, SETTINGS)
        assert rate <= 0.1 < real, f"{name}: faces found in {rate:.2f} (real faces {real:.2f})"


def test_the_mean_face_is_a_face_to_it_so_variety_is_left_to_recall(faces: np.ndarray) -> None:
    mean_face = np.repeat(faces.mean(axis=0, keepdims=True).round().astype(np.uint8), 8, axis=0)
    assert faces_found(mean_face, SETTINGS).all()


def test_ratios_are_over_the_test_splits_rate(faces: np.ndarray) -> None:
    test, samples = faces[:30], np.concatenate([faces[30:45], degraded_sets(faces)["uniform noise"][:15]])
    summary = face_summary({"": samples, "fitted_": faces[30:]}, face_rate_of_test_split(test, SETTINGS),
                           SETTINGS)
    assert summary["test_face_rate"] == face_rate(test, SETTINGS)
    assert summary["face_rate"] == pytest.approx(faces_found(faces[30:45], SETTINGS).sum() / 30)
    assert summary["face_ratio"] == pytest.approx(summary["face_rate"] / summary["test_face_rate"])
    assert summary["fitted_face_ratio"] == pytest.approx(summary["fitted_face_rate"] / summary["test_face_rate"])
    assert summary["face_ratio"] < summary["fitted_face_ratio"]


def test_bad_input_names_the_fix(faces: np.ndarray) -> None:
    with pytest.raises(ValueError, match=r"uint8 images \(N, 3, H, W\)"):
        face_rate(faces.astype(np.float32), SETTINGS)
    with pytest.raises(ValueError, match="finds no face in the test split"):
        face_rate_of_test_split(degraded_sets(faces)["uniform noise"], SETTINGS)


def test_the_command_checks_both_priors_and_the_table_carries_their_ratios(faces: np.ndarray,
                                                                            tmp_path: Path) -> None:
    folder = tmp_path / "eval" / str(SIZE) / "vae"
    folder.mkdir(parents=True)
    np.save(tmp_path / "test.npy", faces[:30])
    np.save(folder / "samples.npy", degraded_sets(faces)["upside down"][30:])
    np.save(folder / FITTED_SAMPLES, faces[30:])
    (folder / "summary.json").write_text(json.dumps({"model": "vae", "resolution": SIZE, "rmse_mean": 1.0}))
    out = tmp_path / "eval" / str(SIZE) / FACE_CHECK_DIR / "vae.json"
    face_check_main(["--res", str(SIZE), "--test", str(tmp_path / "test.npy"), "--samples",
                     str(folder / "samples.npy"), "--out", str(out)])
    written = json.loads(out.read_text())
    expected = face_summary({"": np.load(folder / "samples.npy"), "fitted_": faces[30:]},
                            face_rate_of_test_split(faces[:30], SETTINGS), SETTINGS)
    assert {key: written[key] for key in expected} == pytest.approx(expected)
    params = {"data": {"resolutions": [SIZE]}, "vae": {str(SIZE): {}}}
    table = per_seed_table(params, [tmp_path / "eval"], [tmp_path / "per_image"], [0]).set_index("model")
    assert table.loc["vae", "face_ratio"] == pytest.approx(expected["face_ratio"])
    assert table.loc["vae", "fitted_face_ratio"] == pytest.approx(expected["fitted_face_ratio"])


def test_the_reference_rows_real_faces_read_about_one_and_the_mean_face_is_found(faces: np.ndarray,
                                                                                 tmp_path: Path) -> None:
    np.save(tmp_path / "train.npy", faces[:40])
    np.save(tmp_path / "test.npy", faces[40:])
    face_check_references_main(["--res", str(SIZE), "--train", str(tmp_path / "train.npy"), "--test",
                                str(tmp_path / "test.npy"), "--out-dir", str(tmp_path / FACE_CHECK_DIR)])
    real = json.loads((tmp_path / FACE_CHECK_DIR / f"{TRAINING_IMAGES}.json").read_text())
    mean = json.loads((tmp_path / FACE_CHECK_DIR / f"{MEAN_FACE}.json").read_text())
    test_rate = face_rate(faces[40:], SETTINGS)
    # eval.samples is above 40: every training image is checked, against the 20 test images
    assert real["face_rate"] == pytest.approx(face_rate(faces[:40], SETTINGS))
    assert real["face_ratio"] == pytest.approx(real["face_rate"] / test_rate)
    assert mean["face_rate"] == 1.0 and mean["face_ratio"] == pytest.approx(1 / test_rate)
