"""Load params.yaml, merge override files over it, and validate the result against the JSON schema.

The schema is assembled from one fragment per top-level section (`core/schemas/<section>.schema.yaml`),
so that each part of the suite owns the description of its own parameters.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from core import datasets, registry
from core.paths import check_roots

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
DEFAULT_PARAMS = REPO_ROOT / "params.yaml"


class ParamsError(ValueError):
    """A params file is missing, unreadable or invalid; the message names the key and the fix."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Return `base` with `override` merged in: mappings merge key by key, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ParamsError(f"{self.name}: key {key!r} is given twice in one mapping (lines {seen[key]} and "
                                  f"{key_node.start_mark.line + 1}); YAML would silently keep the last, remove one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"params file {path} does not exist: pass an existing YAML file")
    try:
        loader = _UniqueKeyLoader(path.read_text())
        loader.name = str(path)
        try:
            content = loader.get_single_data() or {}
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        raise ParamsError(f"params file {path} is not valid YAML: {error}") from error
    if not isinstance(content, dict):
        raise ParamsError(f"params file {path} must hold a mapping at its top level, not {type(content).__name__}")
    return content


def load_schema() -> dict[str, Any]:
    """The whole params schema: the top-level frame, one fragment per section, one per data set."""
    frame = yaml.safe_load((SCHEMA_DIR / "params.schema.yaml").read_text())
    for fragment in sorted(SCHEMA_DIR.glob("*.schema.yaml")):
        section = fragment.name.removesuffix(".schema.yaml")
        if section != "params":
            frame["properties"][section] = yaml.safe_load(fragment.read_text())
    # The data sets come from their registry: data.source names one, data.<name> holds its params.
    data = frame["properties"]["data"]
    data["properties"]["source"] = {"enum": datasets.names()}
    data["properties"].update(datasets.schema_fragments())
    return frame


def _key_path(parts: Iterable[Any]) -> str:
    return ".".join(str(part) for part in parts) or "<top level>"


def _check_per_level_lists(params: Mapping[str, Any]) -> None:
    """Cross-field rules JSON schema cannot express: every per-level list has one entry per pyramid level."""
    lapcvae = params.get("lapcvae", {})
    for resolution in params.get("data", {}).get("resolutions", []):
        key = str(resolution)
        if key not in lapcvae:
            raise ParamsError(f"lapcvae.{key}: data.resolutions lists {resolution} but lapcvae has no settings for it")
        level_params = lapcvae[key]
        levels = level_params["levels"]
        for list_key in ("latent_dims", "kl_weights", "level_epochs"):
            if list_key not in level_params:
                continue
            values = level_params[list_key]
            if len(values) != levels:
                raise ParamsError(
                    f"lapcvae.{key}.{list_key}: has {len(values)} entries but lapcvae.{key}.levels is {levels}; "
                    "give one value per level, finest first"
                )
        if resolution % 2 ** (levels - 1):
            raise ParamsError(
                f"lapcvae.{key}.levels: {resolution} px cannot be halved {levels - 1} times evenly; use fewer levels"
            )
        _check_level_sizes(key, resolution, levels, level_params.get("feature_size"))


MIN_LEVEL_SIZE = 2  # px of the coarsest pyramid level: its encoder's first 4x4 convolution needs at least this
FEATURE_SIZES = (1, 2, 4, 8, 16, 32)  # lapcvae.<res>.feature_size's schema enum


def _fits(size: int, feature_size: int) -> bool:
    """models.lapcvae.level_depth's rule: a level halves down to the feature size, or is no larger than it."""
    return size % feature_size == 0 or feature_size % size == 0


def _check_level_sizes(key: str, resolution: int, levels: int, feature_size: int | None) -> None:
    """Every pyramid level must be buildable: the coarsest at least MIN_LEVEL_SIZE px, and each level halving down
    to lapcvae.<res>.feature_size (models/lapcvae.py level_depth); the advice names values that fit."""
    sizes = [resolution // 2**k for k in range(levels)]
    if sizes[-1] < MIN_LEVEL_SIZE:
        most = max(k + 1 for k, size in enumerate(sizes) if size >= MIN_LEVEL_SIZE) if resolution >= 2 else 1
        raise ParamsError(f"lapcvae.{key}.levels: {levels} levels of {resolution} px leave a {sizes[-1]} px coarsest "
                          f"level (at least {MIN_LEVEL_SIZE} px needed); use at most {most} levels")
    if feature_size is None:
        return
    misfits = [size for size in sizes if not _fits(size, feature_size)]
    if misfits:
        working = [value for value in FEATURE_SIZES if all(_fits(size, value) for size in sizes)]
        advice = (f"set lapcvae.{key}.feature_size to {max(working)}" if working else
                  "no feature_size fits every level: use fewer levels or a resolution that is a power of two times 8")
        raise ParamsError(f"lapcvae.{key}.feature_size: {feature_size} px, but the {misfits[0]} px pyramid level "
                          f"cannot be halved down to it; {advice}")


def _check_model_resolutions(params: Mapping[str, Any]) -> None:
    """A model runs at the resolutions of data.resolutions its section has an entry for (core/registry.py,
    models_at); a section with none of them would silently drop the model from every table: refuse it."""
    resolutions = [int(res) for res in params.get("data", {}).get("resolutions", [])]
    for section in registry.params_sections():
        entries = [key for key in params.get(section, {}) if str(key).isdigit()]
        if not any(int(key) in resolutions for key in entries):
            raise ParamsError(f"{section}: has settings for {entries or 'no resolution'} but data.resolutions is "
                              f"{resolutions}, so {section} would run nowhere; add a {section}.\"<res>\" entry for "
                              "one of data.resolutions")
    study = params.get("human_study", {})
    if resolutions and study.get("models"):
        res = study_resolution(params)
        missing = [model for model in study["models"] if model not in registry.models_at(params, res)]
        if missing:
            raise ParamsError(f"human_study.models: {missing} do not run at the study's {res} px (their params "
                              f"sections have no \"{res}\" entry); pick models that do, or another "
                              "human_study.resolution")


def _check_finite(value: Any, location: list[Any]) -> None:
    """NaN passes every schema bound (it fails no comparison) and inf passes every lower one: refuse both."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            _check_finite(item, [*location, key])
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_finite(item, [*location, index])
    elif isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{_key_path(location)}: {value} is not a finite number; give a finite value")


# JSON Schema counts 16.0 as an integer; a batch size or epoch count of 16.0 then fails deep in the loop.
_STRICT_TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda checker, instance: isinstance(instance, int) and not isinstance(instance, bool)
)
_Validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, type_checker=_STRICT_TYPES)


def _check_budget(params: Mapping[str, Any]) -> None:
    """The budget rule: every model's (and every LapCVAE level's) epochs are `budget.epochs`, set nowhere else."""
    places = ["train.epochs"] if "epochs" in params.get("train", {}) else []
    for model in registry.params_sections():
        for key, section in params.get(model, {}).items():
            if not (str(key).isdigit() and isinstance(section, Mapping)):
                continue
            if "epochs" in section.get("train", {}):
                places.append(f"{model}.{key}.train.epochs")
            if "level_epochs" in section:
                places.append(f"{model}.{key}.level_epochs")
    if places:
        raise ParamsError(f"{places[0]}: every model trains for budget.epochs epochs (each LapCVAE level too), so "
                          f"that the comparison is fair; remove {', '.join(places)} and set budget.epochs instead")


def _check_matrix_lr(params: Mapping[str, Any]) -> None:
    """train.matrix_lr is Muon's alone: refuse it where no model it reaches trains with Muon (it would do
    nothing). A global one is read by the models on Muon and ignored by those on another optimizer."""
    global_train = params.get("train", {})
    reached: dict[str, bool] = {}  # where the ratio is set -> does a model on Muon read it
    for model in registry.params_sections():
        for key, section in params.get(model, {}).items():
            if not (str(key).isdigit() and isinstance(section, Mapping)):
                continue
            own = section.get("train", {})
            muon = deep_merge(global_train, own).get("optimizer", "adam") == "muon"
            if "matrix_lr" in own:
                reached[f"{model}.{key}.train.matrix_lr"] = muon
            elif "matrix_lr" in global_train:
                reached["train.matrix_lr"] = reached.get("train.matrix_lr", False) or muon
    for place, muon in reached.items():
        if not muon:
            raise ParamsError(f"{place}: it sets the step of Muon's weight matrices, but no model it applies to "
                              f"trains with Muon; set train.optimizer (or that model's) to muon, or remove it")


def _check_source(params: Mapping[str, Any]) -> None:
    """The data set data.source names must have its section data.<name> when it takes params."""
    source = params.get("data", {}).get("source")
    if source in datasets.schema_fragments() and source not in params["data"]:
        raise ParamsError(f"data.{source}: data.source is {source!r} but its section data.{source} is missing; "
                          f"add it (see core/schemas/datasets/{source}.schema.yaml)")


def rounded_share(total: int, fraction: float) -> int:
    """A split's size: fraction * total rounded half up (202,599 * 0.2 = 40,519.8 -> 40,520)."""
    return int(math.floor(fraction * total + 0.5))


def known_split_sizes(params: Mapping[str, Any]) -> dict[str, int] | None:
    """{'train', 'val', 'test': images} of the prepared splits when the data set fixes its image count in params
    (`data.<source>.count`, e.g. the synthetic faces), as data.prepare.split_indices will draw them; else None."""
    data = params["data"]
    total = data.get(data["source"], {}).get("count") if isinstance(data.get(data["source"]), Mapping) else None
    if not isinstance(total, int):
        return None
    test = rounded_share(total, data["test_fraction"])
    val = rounded_share(total - test, data["validation_fraction"])
    return {"train": total - test - val, "val": val, "test": test}


def _check_settings(params: Mapping[str, Any]) -> None:
    """Settings the DAG reads only after training, checked now: editing's kept levels, the edited test image,
    the neighbours' k and the split sizes where the data set fixes its image count."""
    fixed = params["editing"]["fixed_levels"]
    for res in params["data"]["resolutions"]:
        levels = params["lapcvae"][str(res)]["levels"]
        if fixed > levels:
            raise ParamsError(f"editing.fixed_levels: {fixed} coarsest levels kept, but lapcvae.{res}.levels is "
                              f"{levels}; set it to 1..{levels}")
    sizes = known_split_sizes(params)
    if sizes is None:
        return
    source = params["data"]["source"]
    made = (f"{sizes['train']} training, {sizes['val']} validation and {sizes['test']} test images from "
            f"data.{source}.count {params['data'][source]['count']}")
    # The loop trains on batches of min(batch_size, N) images; batch norm needs two of them.
    if sizes["val"] < 1 or sizes["train"] < 2:
        raise ParamsError(f"data.validation_fraction: {params['data']['validation_fraction']} gives {made}; "
                          "training needs at least two images and validation at least one: use another fraction "
                          "or more images")
    index = params["editing"]["region"]["image_index"]
    if index >= sizes["test"]:
        raise ParamsError(f"editing.region.image_index: {index}, but the test split holds {sizes['test']} images "
                          f"({made}); pick one of 0..{sizes['test'] - 1}")
    k = params["eval"]["neighbours"]["k"]
    if k > sizes["train"]:
        raise ParamsError(f"eval.neighbours.k: {k} nearest training images, but there are {sizes['train']} "
                          f"({made}); lower it")


def check_device(device: str) -> None:
    """Refuse an explicit `device` this machine does not have (torch is imported only for cuda or mps)."""
    if device not in ("cuda", "mps"):
        return
    import torch

    available = torch.cuda.is_available() if device == "cuda" else torch.backends.mps.is_available()
    if not available:
        raise ParamsError(f"device: {device} was asked for, but this machine has no {device.upper()} device that "
                          "torch can use; set device: auto (or cpu), or run where one is")


def validate(params: Mapping[str, Any]) -> dict[str, Any]:
    """Validate merged params; raise ParamsError naming the first offending key."""
    _check_finite(params, [])
    validator = _Validator(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: (len(e.absolute_path), list(e.absolute_path)))
    if errors:
        error = errors[0]
        location = list(error.absolute_path)
        if error.validator == "additionalProperties":
            unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
            location += unknown[:1]
            raise ParamsError(f"{_key_path(location)}: unknown key (allowed here: "
                              f"{', '.join(sorted(error.schema.get('properties', {})))})")
        hint = ""
        if error.validator == "type" and "integer" in str(error.validator_value) and isinstance(error.instance, float):
            hint = "; write a whole number without a decimal point"
        raise ParamsError(f"{_key_path(location)}: {error.message}{hint}")
    _check_per_level_lists(params)
    _check_model_resolutions(params)
    _check_budget(params)
    _check_matrix_lr(params)
    _check_source(params)
    _check_settings(params)
    try:
        check_roots(params["paths"])
    except ValueError as error:
        raise ParamsError(str(error)) from error
    return dict(params)


def load_params(*overrides: str | Path, base: str | Path = DEFAULT_PARAMS) -> dict[str, Any]:
    """params.yaml with each override file merged over it in order, validated."""
    merged = read_yaml(base)
    for override in overrides:
        merged = deep_merge(merged, read_yaml(override))
    return validate(merged)


def train_settings(params: Mapping[str, Any], model: str, resolution: int) -> dict[str, Any]:
    """The shared loop's settings for one model at one resolution: `train` with the model's own overrides.

    Epochs come from the budget rule alone: `budget.epochs` passes over the training images for every model,
    and for each LapCVAE level.
    """
    settings = deep_merge(params["train"], params[model][str(resolution)].get("train", {}))
    settings["epochs"] = int(params["budget"]["epochs"])
    return settings


def study_resolution(params: Mapping[str, Any]) -> int:
    """The resolution the human study compares at: `human_study.resolution` when the run computes it, else the
    largest of `data.resolutions` (so that an override such as `-S data.resolutions='[64]'` runs as a whole)."""
    wanted = int(params["human_study"]["resolution"])
    computed = [int(res) for res in params["data"]["resolutions"]]
    if wanted in computed:
        return wanted
    logging.getLogger(__name__).warning(
        "human_study.resolution %d is not among data.resolutions %s: the study uses %d px (set "
        "human_study.resolution to choose)", wanted, computed, max(computed))
    return max(computed)


def fingerprint(value: Any) -> str:
    """A short stable hash of a params subtree, for Snakemake's params rerun trigger."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]
