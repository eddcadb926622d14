"""Tuning every model's learning rate and regularisation weights on the validation split, with the same number
of trials each, scored on reconstructions and samples together.

The protocol (docs/protocol.md, "How models are compared"): each tuned key gets `tune.trials` candidates, either
`tune.grid.<model>` (factors applied to the current value) or log-spaced factors 10^[-span, span] around it (the
learning rate: `tune.lr_factors`); every candidate trains with the same short budget (`tune.epochs` epochs over
train.npy, the training split minus validation) from each seed of `tune.seeds` (default: `seed` alone), and is
scored by its mean over them. The keys, searched one after another, each on the values chosen before it:

- every model: its Adam rate first (`{model}.{res}.train.lr`; under Muon the rate of the input and output
  layers, biases and norms), the step the model's own layers take;
- VAE and PixelVAE: `kl_weight`; VAE/GAN: `gamma`, then `kl_weight`;
- LapCVAE: `kl_weights` greedily per level, coarsest first, as the paper did (section 5): level K's weight is
  chosen on level K alone (upsampled to full size), then level K-1 trains on the chosen level K, and so on. The
  with-M variant is tuned; the without-M variant uses the same settings.

**Scores**, on the validation split only (the test split is never read): `fit`, the reconstruction RMSE (0-255,
quantised like Table 1) or, for a model whose reconstruction is not scored (registry `reconstructs`), its -ELBO
in nats per image; and the samples of a prior fitted to the training posteriors (models/fitted_prior.py), as many
as validation images, against the validation images in the sample embedding (eval/sample_quality.py):
precision, recall and the Frechet distance. **The rule** (`choose_trial`), the same for every key of every model:
the lowest `fit` among the trials whose sample precision and recall are each within `tune.sample_margin` of the
best trial's; ties go to the value nearest the current one. A candidate that diverges from any seed scores NaN
and is never chosen. With several seeds, LapCVAE's level K-1 of each seed trains on that seed's chosen level K.

`tune` returns (and the command writes) every trial with its mean scores and the spread of `fit` over the seeds
(`fit_sd`), and the chosen values as a params override file (`results/tuning/{res}/{model}.yaml`).

    lapcvae tune --res 64 --model vae --train data/prepared/64/train.npy --val data/prepared/64/val.npy \
        --out-dir results/tuning/64
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from core import registry
from eval.elbo import negative_elbo
from eval.metrics import rmse_per_image
from eval.sample_quality import SampleEmbedding, draw_samples, fit_embedding, sample_metrics
from models.fitted_prior import fit_prior, sample_fitted
from training.loop import NonFiniteLossError

logger = logging.getLogger(__name__)

TUNED_MODELS = registry.TUNED_MODELS
LEARNING_RATE = ("train", "lr")
# The weights each one-job model trades reconstruction against rate and samples with, after its learning rate.
BASELINE_WEIGHTS = {"vae": ("kl_weight",), "vaegan": ("gamma", "kl_weight"), "pixelvae": ("kl_weight",)}
SCORE_COLUMNS = ("fit", "val_rmse", "val_nelbo", "sample_precision", "sample_recall", "fd_embedding")


def candidate_factors(trials: int, span: float) -> list[float]:
    """`trials` factors log-spaced over 10^[-span, span] (1.0 included when `trials` is odd)."""
    if trials < 1:
        raise ValueError(f"tune.trials must be at least 1, got {trials}")
    if trials == 1:
        return [1.0]
    return [float(10.0 ** exponent) for exponent in np.linspace(-span, span, trials)]


def candidates(current: float, factors: Sequence[float], upper: float | None = None) -> list[float]:
    """The candidate values of one weight: current x each factor (clipped to `upper`, duplicates dropped)."""
    if current <= 0:
        raise ValueError(f"cannot search around a weight of {current}: set a positive starting value")
    values = [float(f"{current * factor:.4g}") for factor in factors]  # 1e-06, not 1.0000000000000002e-06
    if upper is not None:
        values = [min(value, upper) for value in values]
    return list(dict.fromkeys(values))


def validation_rmse(model: nn.Module, val_images: np.ndarray, batch_size: int = 256) -> float:
    """Mean per-image RMSE (0-255, quantised reconstruction, as Table 1) of `model` on the validation images."""
    model.eval()
    values = []
    with torch.inference_mode():
        for start in range(0, len(val_images), batch_size):
            reference = torch.from_numpy(np.array(val_images[start:start + batch_size])).float() / 255.0
            values.append(rmse_per_image(reference, model.reconstruct(reference)))
    return float(torch.cat(values).double().mean())


def _set(params: dict[str, Any], path: Sequence[str | int], value: Any) -> dict[str, Any]:
    """A deep copy of `params` with the value at `path` replaced (missing mappings on the way are created)."""
    updated = copy.deepcopy(params)
    node: Any = updated
    for part in path[:-1]:
        node = node.setdefault(part, {}) if isinstance(node, dict) else node[part]
    node[path[-1]] = value
    return updated


def _get(params: Mapping[str, Any], path: Sequence[str | int]) -> Any:
    node: Any = params
    for part in path:
        node = node[part]
    return node


def current_value(params: Mapping[str, Any], path: Sequence[str | int]) -> Any:
    """The value at `path`; a model's `train` key it does not set is the shared `train` section's."""
    try:
        return _get(params, path)
    except (KeyError, IndexError):
        if len(path) == 4 and path[2] == "train":
            return params["train"].get(path[3])
        return None


def short_budget(params: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """params with budget.epochs replaced by the tuning budget (the same for every model)."""
    return _set(dict(params), ("budget", "epochs"), int(epochs))


def train_baseline(params: dict[str, Any], model: str, resolution: int, train_images: np.ndarray,
                   out: Path) -> nn.Module:
    """Train the VAE or VAE/GAN that `params` describes with the shared loop; returns it (eval mode)."""
    from training.baseline_jobs import train_baseline as train_one_job

    return train_one_job(params, model, resolution, train_images, out)[0].cpu().eval()


def train_level(params: dict[str, Any], resolution: int, level: int, coarser: Path | None,
                train_images: np.ndarray, out: Path) -> nn.Module:
    """Train LapCVAE's level `level` (with M) on the coarser levels' checkpoint; returns levels level..K."""
    from training.lapcvae_jobs import train_level as train_one_level

    return train_one_level(params, resolution, "lapcvae", level, coarser, train_images, out)[0].cpu().eval()


def train_model(params: dict[str, Any], model: str, resolution: int, train_images: np.ndarray,
                out_dir: Path) -> tuple[nn.Module, list[Path]]:
    """Train a whole model into out_dir: a baseline's one job, or LapCVAE (with M) level by level, coarsest first.
    Returns the trained network (eval mode) and its jobs' checkpoints, in training order (for eval.cost)."""
    if model != "lapcvae":
        checkpoint = out_dir / "model.pt"
        return train_baseline(params, model, resolution, train_images, checkpoint), [checkpoint]
    checkpoints: list[Path] = []
    network: nn.Module | None = None
    for level in range(params["lapcvae"][str(resolution)]["levels"] - 1, -1, -1):
        coarser = checkpoints[-1] if checkpoints else None
        checkpoints.append(out_dir / f"level{level}.pt")
        network = train_level(params, resolution, level, coarser, train_images, checkpoints[-1])
    assert network is not None  # levels >= 1 (validated)
    return network, checkpoints


def validation_nelbo(model: nn.Module, val_images: np.ndarray, sigma: float, seed: int,
                     batch_size: int = 256) -> float:
    """Mean -ELBO in nats per validation image on the common scale (eval/elbo.py); NaN for a model without one."""
    generator = torch.Generator().manual_seed(seed)
    values = []
    with torch.inference_mode():
        for start in range(0, len(val_images), batch_size):
            images = torch.from_numpy(np.array(val_images[start:start + batch_size])).float() / 255.0
            values.append(negative_elbo(model, images, sigma, generator)["nelbo"])
    return float(torch.cat(values).mean())


def trial_scores(network: nn.Module, model: str, params: Mapping[str, Any], train_images: np.ndarray,
                 val_images: np.ndarray, embedding: SampleEmbedding) -> dict[str, float]:
    """A trained trial's scores on the validation split (SCORE_COLUMNS): reconstruction or -ELBO, and the
    fitted prior's samples (as many as validation images) against the validation images."""
    spec = registry.spec(model)
    evaluation = params["eval"]
    scores = {"val_rmse": validation_rmse(network, val_images) if spec.reconstructs else math.nan,
              "val_nelbo": validation_nelbo(network, val_images, evaluation["elbo_sigma"], params["seed"])}
    scores["fit"] = scores["val_rmse"] if spec.reconstructs else scores["val_nelbo"]
    sample = network.sample
    if spec.latent_prior:
        prior = fit_prior(network, train_images, batch_size=evaluation["batch_size"],
                          ridge=evaluation["fitted_prior"]["ridge"], seed=params["seed"],
                          max_images=evaluation["fitted_prior"]["images"])

        def sample(n: int, seed: int) -> torch.Tensor:
            return sample_fitted(network, prior, n, seed)

    samples = draw_samples(sample, len(val_images), evaluation["batch_size"], params["seed"])
    metrics = sample_metrics(embedding, val_images, samples, evaluation["sample_quality"]["k"])
    scores.update({key: float(metrics[key]) for key in ("sample_precision", "sample_recall", "fd_embedding")})
    return scores


def diverged(label: str, error: NonFiniteLossError) -> dict[str, float]:
    """The scores of a trial whose training diverged: NaN everywhere, so the rule never chooses it."""
    logger.warning("tune %s diverged, scored NaN: %s", label, error)
    return dict.fromkeys((*SCORE_COLUMNS, "fit_sd"), math.nan)


def over_seeds(label: str, seeds: Sequence[int], score_one: Callable[[int], dict[str, float]]) -> dict[str, float]:
    """A trial's scores over its training seeds (score_one(seed) trains and scores one): the mean of each score
    and the spread of `fit` (`fit_sd`, NaN for one seed); NaN everywhere as soon as one seed diverges."""
    per_seed = []
    for seed in seeds:
        try:
            per_seed.append(score_one(seed))
        except NonFiniteLossError as error:
            return diverged(f"{label} seed {seed}", error)
    scores = {column: float(np.mean([one[column] for one in per_seed])) for column in SCORE_COLUMNS}
    fits = [one["fit"] for one in per_seed]
    scores["fit_sd"] = float(np.std(fits, ddof=1)) if len(fits) > 1 else math.nan
    return scores


def tune_seeds(params: Mapping[str, Any]) -> list[int]:
    """The seeds every trial trains from: `tune.seeds`, or the run's `seed` alone."""
    return [int(seed) for seed in params["tune"].get("seeds", [params["seed"]])]


def seeded(params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """params training and scoring from `seed` (data order, initialisation, fitted prior, samples)."""
    return _set(dict(params), ("seed",), int(seed))


def choose_trial(scores: pd.DataFrame, margin: float, values: Sequence[float], current: float) -> int:
    """Position of the chosen trial among one key's trials (rows of SCORE_COLUMNS, in the order of `values`):
    the lowest `fit` among the trials whose sample precision and recall are each within `margin` of the best
    trial's (a NaN sample score rules nothing out); ties go to the value nearest `current`, no move without
    evidence. A trial whose `fit` is not finite (diverged) is never chosen while another is."""
    eligible = np.ones(len(scores), bool)
    for column in ("sample_precision", "sample_recall"):
        column_scores = scores[column].to_numpy(float)
        if np.isfinite(column_scores).any():
            eligible &= ~(column_scores < np.nanmax(column_scores) - margin)
    fits = np.where(eligible & np.isfinite(scores["fit"].to_numpy(float)), scores["fit"].to_numpy(float), np.inf)
    if not np.isfinite(fits).any():
        fits = np.where(eligible, 0.0, np.inf)  # every trial diverged: keep the eligible value nearest current
    best = fits.min()
    return min((index for index in range(len(values)) if fits[index] == best),
               key=lambda index: abs(np.log(values[index] / current)))


def _search(label: str, path: Sequence[str | int], values: Sequence[float],
            run: Callable[[float, Path], dict[str, float]], out_dir: Path, trials: list[dict[str, Any]],
            model: str, current: float, margin: float) -> float:
    """Try each value (run(value, trial_dir) -> scores), record the trials, return the chosen value."""
    rows = []
    for index, value in enumerate(values):
        started = time.perf_counter()
        scores = run(value, out_dir / f"{label}-trial{index}")
        rows.append(scores)
        trials.append({"model": model, "key": ".".join(map(str, path)), "trial": index, "value": value,
                       **{column: scores[column] for column in (*SCORE_COLUMNS, "fit_sd")},
                       "seconds": time.perf_counter() - started, "chosen": False})
        logger.info("tune %s = %.4g: fit %.3f, sample precision %.3f, recall %.3f", ".".join(map(str, path)),
                    value, scores["fit"], scores["sample_precision"], scores["sample_recall"])
    best = choose_trial(pd.DataFrame(rows, columns=list(SCORE_COLUMNS)), margin, values, current)
    trials[len(trials) - len(values) + best]["chosen"] = True
    return values[best]


def tune(params: Mapping[str, Any], resolution: int, train_images: np.ndarray, val_images: np.ndarray,
         out_dir: str | Path, models: Sequence[str] = TUNED_MODELS) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Tune every model's learning rate and weights at one resolution; (all trials, {dotted key: chosen value})."""
    settings = params["tune"]
    out_dir = Path(out_dir)
    res = str(resolution)
    base = short_budget(dict(params), settings["epochs"])
    margin = float(settings["sample_margin"])
    seeds = tune_seeds(params)
    embedding = fit_embedding(train_images, params["eval"]["sample_quality"], params["seed"])
    trials: list[dict[str, Any]] = []
    chosen: dict[str, Any] = {}
    # Scores of settings already trained, by the model's whole section: the current value of a later key is the
    # chosen trial of the one before, trained once (its row is still recorded, so every key has its trials).
    trained: dict[str, dict[str, float]] = {}

    def factors(model: str, path: Sequence[str | int]) -> list[float]:
        if tuple(path[2:]) == LEARNING_RATE:
            return list(settings["lr_factors"])
        grid = (settings.get("grid") or {}).get(model)
        return list(grid) if grid else candidate_factors(settings["trials"], settings["span"])

    def score_whole(tuned: dict[str, Any], model: str, trial_dir: Path) -> dict[str, float]:
        key = json.dumps(tuned[registry.spec(model).params_section][res], sort_keys=True)
        if key not in trained:
            def score_one(seed: int) -> dict[str, float]:
                trial = seeded(tuned, seed)
                network = train_model(trial, model, resolution, train_images, trial_dir / f"seed{seed}")[0]
                return trial_scores(network, model, trial, train_images, val_images, embedding)

            trained[key] = over_seeds(str(trial_dir), seeds, score_one)
        return trained[key]

    def search_whole(tuned: dict[str, Any], model: str, path: tuple, upper: float | None = None) -> dict[str, Any]:
        current = current_value(tuned, path)
        if current is None:
            logger.warning("%s has no %s at %s px: not tuned", model, ".".join(path[2:]), res)
            return tuned

        def run(value: float, trial_dir: Path) -> dict[str, float]:
            return score_whole(_set(tuned, path, value), model, trial_dir)

        values = candidates(float(current), factors(model, path), upper)
        best = _search(f"{model}-{'.'.join(path[2:])}", path, values, run, out_dir / "trials", trials, model,
                       float(current), margin)
        chosen[".".join(path)] = best
        return _set(tuned, path, best)

    for model in models:
        if model not in TUNED_MODELS:
            raise ValueError(f"unknown model {model!r} to tune; choose from {', '.join(TUNED_MODELS)}")
        if res not in params.get(model, {}):
            logger.warning("%s has no %s px section: not tuned", model, res)
            continue
        tuned = search_whole(copy.deepcopy(base), model, (model, res, *LEARNING_RATE))
        if model in BASELINE_WEIGHTS:
            for key in BASELINE_WEIGHTS[model]:
                upper = 1.0 if key == "gamma" else None  # gamma weighs Dis_l against the GAN: in [0, 1]
                tuned = search_whole(tuned, model, (model, res, key), upper)
            continue
        weights = list(tuned["lapcvae"][res]["kl_weights"])
        coarser: dict[int, Path] = {}  # per seed: the chosen coarser levels' checkpoint
        for level in range(tuned["lapcvae"][res]["levels"] - 1, -1, -1):  # coarsest first (greedy)
            checkpoints: dict[float, dict[int, Path]] = {}  # per candidate that trained from every seed

            def run(value: float, trial_dir: Path, level: int = level, coarser: dict = coarser,
                    checkpoints: dict = checkpoints, weights: list = weights, tuned: dict = tuned
                    ) -> dict[str, float]:
                trial_weights = [*weights[:level], value, *weights[level + 1:]]
                trial_params = _set(tuned, ("lapcvae", res, "kl_weights"), trial_weights)
                trained_levels: dict[int, Path] = {}

                def score_one(seed: int) -> dict[str, float]:
                    trial, out = seeded(trial_params, seed), trial_dir / f"seed{seed}" / f"level{level}.pt"
                    network = train_level(trial, resolution, level, coarser.get(seed), train_images, out)
                    trained_levels[seed] = out
                    return trial_scores(network, "lapcvae", trial, train_images, val_images, embedding)

                scores = over_seeds(str(trial_dir), seeds, score_one)
                if len(trained_levels) == len(seeds):
                    checkpoints[value] = trained_levels
                return scores

            path = ("lapcvae", res, "kl_weights", level)
            values = candidates(float(weights[level]), factors("lapcvae", path))
            weights[level] = _search(f"lapcvae-level{level}", path, values, run, out_dir / "trials", trials,
                                     "lapcvae", float(weights[level]), margin)
            if weights[level] not in checkpoints:
                raise ValueError(f"every candidate KL weight of LapCVAE's level {level} at {res} px diverged; lower "
                                 f"lapcvae.{res}.train.lr or set its grad_clip and rerun `snakemake tune`")
            coarser = checkpoints[weights[level]]  # the next finer level trains on the chosen one
        chosen[f"lapcvae.{res}.kl_weights"] = weights
    return pd.DataFrame(trials), chosen


def override_file(chosen: Mapping[str, Any]) -> dict[str, Any]:
    """The chosen values as a params override tree ({"vae": {"64": {"kl_weight": ...}}, ...})."""
    tree: dict[str, Any] = {}
    for dotted, value in chosen.items():
        node = tree
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree
