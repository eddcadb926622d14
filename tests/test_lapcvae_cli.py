"""Greedy training and the model commands, run in-process on a tiny 16 px LapCVAE, on arrays and on face photos of
any size (a 178x218 face of the synthetic generator)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from data.faces import draw_face
from data.prepare import Crop, load_batch
from models.checkpoint import load_checkpoint, load_model, save_model
from workflow.commands.sample import paired_rows, partial_sample_main, reconstruct_main, sample_main, to_uint8
from workflow.commands.train import retrain_m_main, train_level_main

TINY = {"levels": 2, "latent_dims": [4, 3], "kl_weights": [0.1, 1.0], "widths": [4, 8], "feature_size": 2,
        "m_hidden": 6, "train": {"batch_size": 4, "log_every": 1}}


@pytest.fixture()
def setup(tmp_path: Path) -> dict[str, Path]:
    params = tmp_path / "tiny.yaml"
    params.write_text(yaml.safe_dump({"budget": {"epochs": 2},
                                      "lapcvae": {"16": TINY, "retrain_m": {"epochs": 1, "lr": 0.01}}}))
    data = tmp_path / "train.npy"
    np.save(data, np.random.default_rng(0).integers(0, 256, (8, 3, 16, 16), dtype=np.uint8))
    return {"params": params, "data": data, "models": tmp_path / "models"}


def train(setup: dict[str, Path], level: int, variant: str = "lapcvae", coarser: bool = True) -> Path:
    out = setup["models"] / variant / f"level{level}.pt"
    argv = ["--params", str(setup["params"]), "--res", "16", "--variant", variant, "--level", str(level),
            "--data", str(setup["data"]), "--out", str(out)]
    if coarser:
        argv += ["--coarser", str(setup["models"] / variant / f"level{level + 1}.pt")]
    train_level_main(argv)
    return out


def test_greedy_levels_chain_and_keep_the_coarser_weights(setup: dict[str, Path]) -> None:
    level1 = train(setup, 1, coarser=False)
    level0 = train(setup, 0)
    coarse, whole = load_checkpoint(level1), load_checkpoint(level0)
    assert coarse["config"]["trained_levels"] == 1 and whole["config"]["trained_levels"] == 2
    assert (coarse["meta"]["epochs"], whole["meta"]["epochs"]) == (2, 2)  # budget.epochs at every level
    # Training time accumulates down the pyramid in the metadata: level 0's covers both level jobs.
    assert coarse["meta"]["pyramid_train_seconds"] == coarse["meta"]["train_seconds"]
    assert whole["meta"]["pyramid_train_seconds"] == pytest.approx(
        whole["meta"]["train_seconds"] + coarse["meta"]["train_seconds"])
    for key, value in coarse["state_dict"].items():
        assert torch.equal(whole["state_dict"][key], value), key  # level 1 stayed frozen while level 0 trained
    assert level0.with_name("level0.log.csv").read_text().startswith("step,epoch,loss,recon,kl")
    model = load_model(level0)
    assert model.sample(2, seed=0).shape == (2, 3, 16, 16)


def test_coarser_rules(setup: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="needs --coarser"):
        train(setup, 0, coarser=False)
    with pytest.raises(ValueError, match="drop --coarser"):
        train(setup, 1, coarser=True)
    train(setup, 1, coarser=False)
    with pytest.raises(ValueError, match="share one"):
        train(setup, 1, variant="lapcvae_nom", coarser=False)  # the coarsest level is trained once, with M's job
    nom = setup["models"] / "lapcvae_nom"
    nom.mkdir(parents=True)
    (nom / "level1.pt").write_bytes((setup["models"] / "lapcvae" / "level1.pt").read_bytes())
    whole_nom = load_model(train(setup, 0, variant="lapcvae_nom"))  # the shared coarsest level seeds it
    assert not whole_nom.use_m
    shared = load_checkpoint(setup["models"] / "lapcvae" / "level1.pt")["state_dict"]
    assert all(torch.equal(whole_nom.state_dict()[key], value) for key, value in shared.items())
    (nom / "level0.pt").rename(nom / "other.pt")
    (nom / "level1.pt").write_bytes((nom / "other.pt").read_bytes())  # two levels: not level 1's checkpoint
    with pytest.raises(ValueError, match="another configuration"):
        train(setup, 0, variant="lapcvae_nom")


def test_retrain_m_changes_only_the_m_networks(setup: dict[str, Path]) -> None:
    train(setup, 1, coarser=False)
    level0 = train(setup, 0)
    out = setup["models"] / "lapcvae" / "retrained_m.pt"
    retrain_m_main(["--params", str(setup["params"]), "--res", "16", "--checkpoint", str(level0),
                    "--data", str(setup["data"]), "--out", str(out)])
    before, after = load_checkpoint(level0)["state_dict"], load_checkpoint(out)["state_dict"]
    changed = {key for key in before if not torch.equal(before[key], after[key])}
    retrained_meta, whole_meta = load_checkpoint(out)["meta"], load_checkpoint(level0)["meta"]
    assert retrained_meta["pyramid_train_seconds"] == pytest.approx(
        retrained_meta["train_seconds"] + whole_meta["pyramid_train_seconds"])
    assert changed and all("prior_net" in key for key in changed)


def test_model_commands(setup: dict[str, Path], tmp_path: Path) -> None:
    train(setup, 1, coarser=False)
    checkpoint = str(train(setup, 0))
    model = load_model(checkpoint)
    images = np.load(setup["data"])

    reconstruct_main(["--checkpoint", checkpoint, "--images", str(setup["data"]), "--out", str(tmp_path / "r.npy")])
    expected = to_uint8(model.reconstruct(torch.from_numpy(images).float() / 255))
    assert np.array_equal(np.load(tmp_path / "r.npy"), expected)

    png = tmp_path / "in.png"
    Image.fromarray(images[2].transpose(1, 2, 0)).save(png)
    reconstruct_main(["--checkpoint", checkpoint, "--images", str(png), "--out", str(tmp_path / "r.png")])
    # One row: the input, then the reconstruction at each of the 2 levels, with 2 px padding.
    assert Image.open(tmp_path / "r.png").size == (3 * 16 + 4 * 2, 16 + 2 * 2)
    assert np.array_equal(grid_cell(tmp_path / "r.png", 0, 0), images[2].transpose(1, 2, 0))

    for name in ("s1.npy", "s2.npy"):
        sample_main(["--checkpoint", checkpoint, "--n", "3", "--seed", "7", "--out", str(tmp_path / name)])
    assert np.array_equal(np.load(tmp_path / "s1.npy"), np.load(tmp_path / "s2.npy"))

    partial_sample_main(["--checkpoint", checkpoint, "--npy", str(setup["data"]), "--index", "2",
                         "--fixed-levels", "2", "--n", "3", "--out", str(tmp_path / "p.npy")])
    partial = np.load(tmp_path / "p.npy")  # every level fixed: each sample is the reconstruction
    assert partial.shape == (3, 3, 16, 16) and all(np.array_equal(sample, expected[2]) for sample in partial)


def test_bad_inputs_name_the_cause(setup: dict[str, Path], tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not an image")
    train(setup, 1, coarser=False)
    checkpoint = str(setup["models"] / "lapcvae" / "level1.pt")
    with pytest.raises(ValueError, match="cannot be decoded"):
        reconstruct_main(["--checkpoint", checkpoint, "--images", str(corrupt), "--out", str(tmp_path / "o.npy")])
    with pytest.raises(FileNotFoundError, match="prepare"):
        train_level_main(["--params", str(setup["params"]), "--res", "16", "--variant", "lapcvae", "--level", "1",
                          "--data", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "x.pt")])
    with pytest.raises(ValueError, match="no lapcvae.32 section"):
        train_level_main(["--params", str(setup["params"]), "--res", "32", "--variant", "lapcvae", "--level", "1",
                          "--data", str(setup["data"]), "--out", str(tmp_path / "x.pt")])
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "x.pt").exists()


def test_reconstruction_grid_pairs_rows() -> None:
    inputs, outputs = torch.zeros(10, 3, 2, 2), torch.full((10, 3, 2, 2), 0.5)
    rows = paired_rows(inputs, outputs, per_row=8)  # 2 rows of inputs, each followed by its outputs
    assert rows.shape == (32, 3, 2, 2)
    assert torch.equal(rows[8:16], outputs[:8]) and torch.equal(rows[16:18], inputs[8:])
    assert torch.equal(rows[18:24], torch.ones(6, 3, 2, 2)) and torch.equal(rows[24:26], outputs[8:])


def grid_cell(path: Path, row: int, column: int, side: int = 16) -> np.ndarray:
    """The (side, side, 3) image at (row, column) of a figure written with make_grid's 2 px padding."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    top, left = 2 + row * (side + 2), 2 + column * (side + 2)
    return pixels[top: top + side, left: left + side]


@pytest.fixture()
def face_photo(tmp_path: Path) -> Path:
    """A 178x218 aligned face of the synthetic generator, as a PNG (lossless, so crops can be compared)."""
    pixels, _ = draw_face(0, 3)
    assert pixels.shape == (218, 178, 3)
    path = tmp_path / "face.png"
    Image.fromarray(pixels).save(path)
    return path


def test_a_face_photo_of_any_size_is_cropped_resized_and_reconstructed(
    setup: dict[str, Path], tmp_path: Path, face_photo: Path
) -> None:
    train(setup, 1, coarser=False)
    checkpoint = str(train(setup, 0))
    model = load_model(checkpoint)
    with torch.no_grad():  # a visible finest band (two steps barely move it), so the figure's columns must differ
        model.level(0).decoder.to_image.bias.add_(0.2)
    save_model(checkpoint, model, model.meta)
    photo = Image.open(face_photo)

    # Default: the centred 178x178 square, resized to the model's 16 px.
    reconstruct_main(["--checkpoint", checkpoint, "--images", str(face_photo), "--out", str(tmp_path / "c.png")])
    reconstruct_main(["--checkpoint", checkpoint, "--images", str(face_photo), "--out", str(tmp_path / "c.npy")])
    shown_input = grid_cell(tmp_path / "c.png", 0, 0)
    by_pil = np.asarray(photo.crop((0, 20, 178, 198)).resize((16, 16), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(shown_input.astype(int) - by_pil).max() <= 2  # torch's antialiased bicubic follows PIL's
    reconstruction = np.load(tmp_path / "c.npy")[0]  # (3, 16, 16)
    expected = to_uint8(model.reconstruct(torch.from_numpy(shown_input.transpose(2, 0, 1).copy())[None] / 255.0))
    assert np.array_equal(reconstruction, expected[0])
    # The figure's row runs coarse to fine: level 1 upsampled, then the whole reconstruction.
    assert np.array_equal(grid_cell(tmp_path / "c.png", 0, 2), reconstruction.transpose(1, 2, 0))
    assert not np.array_equal(grid_cell(tmp_path / "c.png", 0, 1), grid_cell(tmp_path / "c.png", 0, 2))

    # --crop celeba: the authors' box, exactly as `lapcvae prepare` turns the same file into training data.
    reconstruct_main(["--checkpoint", checkpoint, "--images", str(face_photo), "--crop", "celeba",
                      "--out", str(tmp_path / "a.png")])
    prepared = load_batch([face_photo], Crop(top=40, left=15, size=148), [16])[0][0]  # (3, 16, 16)
    assert np.array_equal(grid_cell(tmp_path / "a.png", 0, 0), prepared.transpose(1, 2, 0))
    assert not np.array_equal(prepared.transpose(1, 2, 0), shown_input)

    # partial-sample takes the photo too: input, base, then samples; every level fixed gives the reconstruction.
    partial_sample_main(["--checkpoint", checkpoint, "--image", str(face_photo), "--fixed-levels", "2", "--n", "3",
                         "--out", str(tmp_path / "p.png")])
    assert Image.open(tmp_path / "p.png").size == (5 * 16 + 6 * 2, 16 + 2 * 2)
    assert np.array_equal(grid_cell(tmp_path / "p.png", 0, 0), shown_input)
    for column in (2, 3, 4):
        assert np.array_equal(grid_cell(tmp_path / "p.png", 0, column), reconstruction.transpose(1, 2, 0))


def test_photos_that_cannot_be_used_are_refused_by_name(
    setup: dict[str, Path], tmp_path: Path, face_photo: Path
) -> None:
    checkpoint = str(train(setup, 1, coarser=False))
    text = tmp_path / "notes.jpg"
    text.write_text("not a photo")
    truncated = tmp_path / "truncated.jpg"
    Image.open(face_photo).convert("RGB").save(truncated, format="JPEG")
    truncated.write_bytes(truncated.read_bytes()[:400])
    square = tmp_path / "square.png"
    Image.open(face_photo).crop((0, 0, 100, 100)).save(square)
    cases = [
        ([str(text)], "centre", r"notes\.jpg cannot be decoded"),
        ([str(truncated)], "centre", r"truncated\.jpg cannot be decoded"),
        ([str(tmp_path)], "centre", "is a folder"),
        ([str(square)], "celeba", r"square\.png is 100x100, but --crop celeba takes an aligned 178x218"),
    ]
    for images, crop, message in cases:
        with pytest.raises(ValueError, match=message):
            reconstruct_main(["--checkpoint", checkpoint, "--images", *images, "--crop", crop,
                              "--out", str(tmp_path / "o.png")])
        with pytest.raises(ValueError, match=message):
            partial_sample_main(["--checkpoint", checkpoint, "--image", images[0], "--crop", crop,
                                 "--fixed-levels", "1", "--out", str(tmp_path / "o.png")])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        reconstruct_main(["--checkpoint", checkpoint, "--images", str(tmp_path / "absent.png"),
                          "--out", str(tmp_path / "o.png")])
    assert not (tmp_path / "o.png").exists()


def test_a_sixteen_bit_grey_photo_keeps_its_tones(setup: dict[str, Path], tmp_path: Path) -> None:
    checkpoint = str(train(setup, 1, coarser=False))
    ramp = (np.linspace(0, 65535, 16, dtype=np.uint16)[None, :] * np.ones((16, 1), dtype=np.uint16))  # (16, 16)
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I;16")
    reconstruct_main(["--checkpoint", checkpoint, "--images", str(path), "--out", str(tmp_path / "g.png")])
    shown = grid_cell(tmp_path / "g.png", 0, 0).astype(int)
    assert np.array_equal(shown[..., 0], (ramp >> 8).astype(int)) and (shown[..., 0] == shown[..., 2]).all()
