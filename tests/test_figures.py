"""Figures: grids hold the input pixels, Figure 7 has one row per fixed level count, the CLI writes all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from core import figures as figure_table
from core.params import REPO_ROOT
from eval import figures
from eval.plotting import MODELS, grid_array, image_grid, save_figure, to_hwc_uint8
from models.checkpoint import save_model
from models.lapcvae import LapCVAE
from workflow.commands.evaluate import figures_main

SIZE = 16
SMOKE = str(REPO_ROOT / "config" / "smoke.yaml")


def smooth_images(n: int, seed: int) -> np.ndarray:
    """(n, 3, SIZE, SIZE) uint8 images: random 4x4 colour fields upsampled, like blurry faces."""
    coarse = np.random.default_rng(seed).integers(0, 256, (n, 3, 4, 4), dtype=np.uint8)
    return np.ascontiguousarray(coarse.repeat(SIZE // 4, axis=2).repeat(SIZE // 4, axis=3))


class StandInLapCVAE:
    """LapCVAE-like partial sampler: the base keeps the coarse average, samples add seeded noise."""

    kind = "lapcvae"

    def __init__(self, levels: int = 4):
        self.levels = levels
        self.calls: list[tuple[int, int, int]] = []

    def partial_sample(self, x: torch.Tensor, fixed_levels: int, n: int, seed: int):
        self.calls.append((fixed_levels, n, seed))
        factor = 2 ** (self.levels - fixed_levels)  # fewer fixed levels: a coarser base
        base = F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")  # (1, 3, H, W)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.rand((n, *x.shape[1:]), generator=generator) * 0.1 * (self.levels - fixed_levels)
        return (base + noise).clamp(0, 1), base


def panel(grid: np.ndarray, row: int, column: int, padding: int = 2) -> np.ndarray:
    top, left = row * (SIZE + padding), column * (SIZE + padding)
    return grid[top:top + SIZE, left:left + SIZE]  # (SIZE, SIZE, 3)


def test_to_hwc_uint8_converts_layout_and_scale():
    image = np.zeros((3, 2, 2), dtype=np.float32)
    image[0] = 1.0
    image[1] = 0.5
    converted = to_hwc_uint8(image)
    assert converted.shape == (2, 2, 3) and converted.dtype == np.uint8
    assert converted[0, 0].tolist() == [255, 128, 0]
    with pytest.raises(ValueError, match="shape"):
        to_hwc_uint8(np.zeros((4, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        to_hwc_uint8(np.full((3, 2, 2), np.nan))


def test_fig4_grid_panels_hold_originals_and_reconstructions():
    originals = smooth_images(3, seed=1)
    reconstructions = {"vae": smooth_images(3, seed=2), "lapcvae": smooth_images(3, seed=3)}
    rows, row_labels, col_labels = figures.reconstruction_rows(originals, reconstructions)
    assert row_labels == ["Original", "VAE", "LapCVAE"]
    assert col_labels == ["test 0", "test 1", "test 2"]
    grid = grid_array(rows)
    assert grid.shape == (3 * SIZE + 2 * 2, 3 * SIZE + 2 * 2, 3)
    for i in range(3):
        np.testing.assert_array_equal(panel(grid, 0, i), originals[i].transpose(1, 2, 0))
        np.testing.assert_array_equal(panel(grid, 1, i), reconstructions["vae"][i].transpose(1, 2, 0))
        np.testing.assert_array_equal(panel(grid, 2, i), reconstructions["lapcvae"][i].transpose(1, 2, 0))
    assert (grid[SIZE:SIZE + 2] == 255).all()  # white padding between rows


def test_fig4_rejects_reconstructions_of_another_shape():
    with pytest.raises(ValueError, match="re-evaluate vae"):
        figures.reconstruction_rows(smooth_images(3, 1), {"vae": smooth_images(2, 2)})


def test_fig5_puts_each_fitted_prior_row_under_its_models_n01_row():
    samples = {"vae": smooth_images(3, seed=1), "lapcvae": smooth_images(3, seed=2), "pixelvae": smooth_images(3, 5)}
    fitted = {"vae": smooth_images(3, seed=3), "lapcvae": smooth_images(3, seed=4)}
    rows, row_labels, col_labels = figures.sample_rows(samples, fitted=fitted)
    assert row_labels == ["VAE, N(0, I) prior", "VAE, fitted prior", "LapCVAE, N(0, I) prior",
                          "LapCVAE, fitted prior", "PixelVAE"]
    assert col_labels == ["sample 1", "sample 2", "sample 3"]
    grid = grid_array(rows)
    expected = [samples["vae"], fitted["vae"], samples["lapcvae"], fitted["lapcvae"], samples["pixelvae"]]
    for row, images in enumerate(expected):
        for i in range(3):
            np.testing.assert_array_equal(panel(grid, row, i), images[i].transpose(1, 2, 0))
    with pytest.raises(ValueError, match="re-evaluate vae"):
        figures.sample_rows(samples, fitted={"vae": smooth_images(2, seed=3)})
    with pytest.raises(ValueError, match=r"\['vaegan'\] have no N\(0, I\) samples"):
        figures.sample_rows(samples, fitted={"vaegan": smooth_images(3, seed=3)})


def test_fig7_has_one_row_per_fixed_level_count_with_base_first():
    model = StandInLapCVAE(levels=4)
    image = smooth_images(1, seed=4)[0]
    rows, row_labels, col_labels = figures.partial_sample_rows(model, image, samples=3, seed=7)
    assert [call[0] for call in model.calls] == [1, 2, 3]  # 1 .. K fixed coarsest levels, K + 1 = 4 levels
    assert all(call[1:] == (3, 7) for call in model.calls)
    assert len(rows) == 3 and all(len(row) == 4 for row in rows)
    assert col_labels == ["Base", "sample 1", "sample 2", "sample 3"]
    assert row_labels == ["z3 fixed", "z2..z3 fixed", "z1..z3 fixed"]
    x = torch.from_numpy(image.astype(np.float32) / 255).unsqueeze(0)
    grid = grid_array(rows)
    for row, fixed in enumerate((1, 2, 3)):
        samples, base = model.partial_sample(x, fixed, 3, 7)
        np.testing.assert_array_equal(panel(grid, row, 0), to_hwc_uint8(base[0].numpy()))
        np.testing.assert_array_equal(panel(grid, row, 2), to_hwc_uint8(samples[1].numpy()))
    # the stand-in's variety falls as more levels are fixed; the grid must carry that through
    spread = [np.std([panel(grid, row, c).astype(float) for c in (1, 2, 3)], axis=0).mean()
              for row in range(3)]
    assert spread[0] > spread[1] > spread[2]


def test_fig7_needs_two_levels():
    with pytest.raises(ValueError, match="at least 2 levels"):
        figures.partial_sample_rows(StandInLapCVAE(levels=1), smooth_images(1, 0)[0], samples=2, seed=0)


def test_training_curves_one_line_per_level_and_term_log_scale():
    steps = np.arange(200)
    level_log = pd.DataFrame({"step": steps, "epoch": steps // 50, "recon": 1000 * np.exp(-steps / 30) + 1,
                              "kl": 5 + np.zeros(200), "loss": np.ones(200)})
    vaegan_log = pd.DataFrame({"step": steps, "epoch": 0, "kl": np.ones(200), "dis_l": 2 * np.ones(200),
                               "gan": 3 * np.ones(200)})
    retrain_log = pd.DataFrame({"step": steps, "epoch": 0, "kl_level0": np.ones(200), "kl_level1": np.ones(200),
                                "loss": np.ones(200)})
    logs = {"lapcvae": {"level 0": level_log, "level 1": level_log}, "vaegan": {"": vaegan_log},
            "lapcvae_retrained_m": {"": retrain_log}}
    fig = figures.training_curves_figure(logs, res=SIZE)
    lapcvae_axes, vaegan_axes, retrain_axes = fig.axes
    assert lapcvae_axes.get_title() == "LapCVAE" and lapcvae_axes.get_yscale() == "log"
    styles = {line.get_label(): (line.get_color(), line.get_linestyle()) for line in lapcvae_axes.lines}
    assert styles == {"level 0 recon": ("C0", "-"), "level 0 kl": ("C0", "--"),
                      "level 1 recon": ("C1", "-"), "level 1 kl": ("C1", "--")}
    np.testing.assert_allclose(lapcvae_axes.lines[0].get_ydata()[-1], level_log["recon"].iloc[-4:].mean())
    assert [line.get_label() for line in vaegan_axes.lines] == ["kl", "dis_l"]  # the GAN term is left out
    assert vaegan_axes.get_yscale() == "linear"
    assert [line.get_color() for line in retrain_axes.lines] == ["C0", "C1"]  # level read from the column
    with pytest.raises(FileNotFoundError, match="train the models"):
        figures.training_curves_figure({}, res=SIZE)


def test_figure5_shows_every_sample_in_rows_labelled_once_per_model():
    samples = {"vae": smooth_images(16, seed=1), "lapcvae": smooth_images(16, seed=2)}
    rows, row_labels, col_labels = figures.sample_rows(samples, per_row=8)
    assert [len(row) for row in rows] == [8, 8, 8, 8] and col_labels == [f"sample {i}" for i in range(1, 9)]
    assert row_labels == ["VAE", "", "LapCVAE", ""]
    np.testing.assert_array_equal(np.stack(rows[2] + rows[3]), samples["lapcvae"])  # in order, none dropped


def write_fixture_tree(root: Path, n_test: int = 6) -> dict[str, Path]:
    """results/eval, results/models logs and test.npy for resolution SIZE, as the pipeline lays them out."""
    test = root / "data" / "test.npy"
    test.parent.mkdir(parents=True)
    np.save(test, smooth_images(n_test, seed=0))
    eval_dir, models_dir = root / "results" / "eval", root / "results" / "models"
    for index, model in enumerate(MODELS):
        folder = eval_dir / str(SIZE) / model
        folder.mkdir(parents=True)
        np.save(folder / "reconstructions.npy", smooth_images(n_test, seed=10 + index))
        np.save(folder / "samples.npy", smooth_images(16, seed=20 + index))  # eval.samples, Figure 5's 16
    steps = np.arange(30)
    log = pd.DataFrame({"step": steps, "epoch": 0, "rec": 100 / (1 + steps), "kl": 1 + steps / 10})
    for relative in ("vae/model", "vaegan/model", "lapcvae/level0", "lapcvae/level1", "lapcvae/retrained_m",
                     "lapcvae_nom/level0"):
        path = models_dir / str(SIZE) / f"{relative}.log.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        log.to_csv(path, index=False)
    return {"test": test, "eval": eval_dir, "models": models_dir, "out": root / "results" / "figures"}


def run_cli(paths: dict[str, Path]) -> None:
    figures_main(["--params", SMOKE, "--res", str(SIZE), "--eval-dir", str(paths["eval"]), "--models-dir",
                  str(paths["models"]), "--test", str(paths["test"]), "--out-dir", str(paths["out"])])


def test_figures_cli_writes_every_figure(tmp_path, monkeypatch):
    paths = write_fixture_tree(tmp_path)
    stand_in = StandInLapCVAE(levels=3)
    loaded = []
    monkeypatch.setattr(figures, "load_model", lambda path, **expected: loaded.append(Path(path)) or stand_in)
    run_cli(paths)
    assert loaded == [paths["models"] / str(SIZE) / "lapcvae" / "level0.pt"]
    assert stand_in.calls == [(1, 3, 0), (2, 3, 0)]  # smoke params: 3 samples, seed 0
    names = {figure.name for figure in figure_table.specs(figure_table.FIGURES_COMMAND)}  # every one it draws
    assert {path.name for path in paths["out"].iterdir()} == {f"{name}_{SIZE}.png" for name in names}
    fig4 = np.asarray(Image.open(paths["out"] / f"fig4_reconstructions_{SIZE}.png"))
    fig7 = np.asarray(Image.open(paths["out"] / f"fig7_partial_{SIZE}.png"))
    # smoke shows 4 images in 6 rows (originals + 5 models) vs 4 columns in 2 rows: taller than wide ratio
    assert fig4.shape[0] > fig7.shape[0]
    assert len(np.unique(fig4.reshape(-1, fig4.shape[-1]), axis=0)) > 50  # real image content, not blank


def test_curve_tables_hold_each_logged_term_over_steps_and_replace_the_old_folder(tmp_path):
    """One CSV per (model, training job, term) with step, epoch and that term last (the y `dvc plots` draws); a
    rerun replaces the folder whole, so no curve of a term or job that is gone stays behind."""
    paths = write_fixture_tree(tmp_path)
    curves = tmp_path / "results" / "curves" / str(SIZE)
    stale = curves / "vae" / "model" / "gone.csv"
    stale.parent.mkdir(parents=True)
    stale.write_text("step,gone\n1,2\n")
    logs = figures.training_logs(paths["models"], SIZE, ["vae", "lapcvae", "lapcvae_retrained_m"])
    written = figures.write_curve_tables(logs, curves)
    relative = {path.relative_to(curves).as_posix() for path in curves.rglob("*.csv")}
    assert relative == {path.relative_to(curves).as_posix() for path in written} == {
        f"{job}/{term}.csv" for job in ("vae/model", "lapcvae/level0", "lapcvae/level1",
                                        "lapcvae_retrained_m/retrained_m") for term in ("rec", "kl")}
    source = pd.read_csv(paths["models"] / str(SIZE) / "lapcvae" / "level1.log.csv")
    table = pd.read_csv(curves / "lapcvae" / "level1" / "kl.csv")
    assert table.columns.tolist() == ["step", "epoch", "kl"]
    pd.testing.assert_frame_equal(table, source[["step", "epoch", "kl"]])
    bad = paths["models"] / str(SIZE) / "vae" / "model.log.csv"
    bad.write_text("step,epoch,kl/level\n1,0,2.0\n")
    with pytest.raises(ValueError, match="cannot name a file"):
        figures.write_curve_tables(logs, curves)
    assert {path.relative_to(curves).as_posix() for path in curves.rglob("*.csv")} == relative  # kept whole


def test_figures_cli_names_the_missing_artefact(tmp_path, monkeypatch):
    paths = write_fixture_tree(tmp_path)
    (paths["eval"] / str(SIZE) / "vaegan" / "samples.npy").unlink()
    monkeypatch.setattr(figures, "load_model", lambda path, **expected: StandInLapCVAE())
    with pytest.raises(FileNotFoundError, match="vaegan/samples.npy"):
        run_cli(paths)
    np.save(paths["eval"] / str(SIZE) / "vaegan" / "samples.npy", np.zeros((8, 16, 16), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8 images"):
        run_cli(paths)


def test_image_grid_checks_labels_and_save_is_atomic(tmp_path):
    rows = [[smooth_images(1, 0)[0], None]]
    with pytest.raises(ValueError, match="one label per row"):
        image_grid(rows, row_labels=["a", "b"])
    fig = image_grid(rows, row_labels=["a"], col_labels=["x", "y"], title="t", caption="c")
    with pytest.raises(ValueError, match=".png"):
        save_figure(fig, tmp_path / "figure.jpg")
    path = save_figure(fig, tmp_path / "figure.png")
    assert Image.open(path).format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]  # no temporary left behind


def test_fig7_with_a_real_untrained_lapcvae_checkpoint(tmp_path):
    model = LapCVAE(resolution=SIZE, levels=3, latent_dims=[4, 4, 4], kl_weights=[1.0, 1.0, 1.0], widths=[8],
                    feature_size=4, m_hidden=8, use_m=True)
    save_model(tmp_path / "level0.pt", model)
    loaded = figures.load_model(tmp_path / "level0.pt")
    image = smooth_images(1, seed=5)[0]
    rows, row_labels, _ = figures.partial_sample_rows(loaded, image, samples=2, seed=3)
    assert row_labels == ["z2 fixed", "z1..z2 fixed"]
    x = torch.from_numpy(image.astype(np.float32) / 255).unsqueeze(0)
    grid = grid_array(rows)
    for row, fixed in enumerate((1, 2)):
        samples, base = loaded.partial_sample(x, fixed, 2, 3)
        np.testing.assert_array_equal(panel(grid, row, 0), to_hwc_uint8(base[0].numpy()))
        np.testing.assert_array_equal(panel(grid, row, 1), to_hwc_uint8(samples[0].numpy()))
