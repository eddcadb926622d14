"""The one table of the suite's figures: name, title, caption, drawing function, inputs, the models it shows.

Everything that needs to know which figures exist reads it: the Snakefile (each figure rule's outputs and, for
`lapcvae figures`, its inputs), `lapcvae figures` (which functions it calls), the report's figure section (order
and captions), workflow/pipeline.py's `figures(params)` (the DAG's targets) and dvc.yaml (`vars: -
core/figures.py:FIGURES`: its figure stages are a matrix over a group's names). DVC reads the table as data,
so FIGURES holds literals only.

FIGURES groups the figures by the command that draws them:
    figures      `lapcvae figures` (rule `figures`, eval/figures.py `write_figures`): a new figure goes here
    neighbours   `lapcvae neighbours`, which draws Figure 6 from the neighbours it computes
    editing      `lapcvae edit-coarse` / `edit-region` (row key `rule`), Figures 1 and 9 beside their variants

Each row, keyed by the figure's name (its file stem):
    title      how the report and Snakemake's report head it ("Figure 4" for the paper's figures)
    caption    the report's caption, after the title
    draw       "module:function" that draws it; in the `figures` group it is called as
               `function(inputs: eval.figures.FigureInputs) -> matplotlib Figure`
    inputs     what it reads (INPUTS below); the `figures` rule declares them to Snakemake
    models     the models it needs (all of them present at the resolution, else it is skipped); absent: every
               model the resolution runs, of which it shows what it can
Its file is FILE_PATTERN under `paths.results`, at every resolution of `data.resolutions`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

FIGURES = {
    "figures": {
        "fig4_reconstructions": {
            "title": "Figure 4",
            "caption": "test images (top row) and every model's reconstructions of them.",
            "draw": "eval.figures:reconstructions_figure",
            "inputs": ["test", "reconstructions"],
        },
        "fig5_samples": {
            "title": "Figure 5",
            "caption": "samples of every model, drawn with the same seed.",
            "draw": "eval.figures:samples_figure",
            "inputs": ["samples"],
        },
        "fig7_partial": {
            "title": "Figure 7",
            "caption": "LapCVAE partial sampling: the coarsest levels are fixed, the finer ones sampled; the Base "
                       "column is what the fixed levels alone produce.",
            "draw": "eval.figures:partial_figure",
            "inputs": ["test", "checkpoint"],
            "models": ["lapcvae"],
        },
        "fig8_retrained_m": {
            "title": "Figure 8",
            "caption": "LapCVAE samples before and after retraining M, same seeds.",
            "draw": "eval.figures:retrained_m_figure",
            "inputs": ["samples"],
            "models": ["lapcvae", "lapcvae_retrained_m"],
        },
        "training_curves": {
            "title": "Training curves",
            "caption": "reconstruction and KL terms per step, one line per LapCVAE level.",
            "draw": "eval.figures:training_curves_plot",
            "inputs": ["training_logs"],
        },
        # Add a figure here (docs/extending.md, "Adding a figure"), e.g. "mean_samples": {"title": "Mean samples",
        # "caption": "...", "draw": "eval.myfigure:mean_samples_figure", "inputs": ["samples"]}.
    },
    "neighbours": {
        "fig6_neighbours": {
            "title": "Figure 6",
            "caption": "samples beside their nearest training images (pixel MSE); samples unlike their neighbours "
                       "are not memorised.",
            "draw": "eval.neighbours:neighbours_figure",
            "inputs": ["samples", "train", "test"],
        },
    },
    "editing": {
        "fig1_edit": {
            "title": "Figure 1",
            "caption": "the coarse level of an input is painted, samples are drawn conditioned on it and the region "
                       "of interest is composited into the reconstruction.",
            "draw": "eval.editing_figures:edit_figure",
            "inputs": ["checkpoint", "test", "attributes"],
            "models": ["lapcvae"],
            "rule": "edit_coarse",
        },
        "fig9_region": {
            "title": "Figure 9",
            "caption": "a selected region is resampled conditioned on the coarse input, then composited.",
            "draw": "eval.editing_figures:edit_figure",
            "inputs": ["checkpoint", "test", "attributes"],
            "models": ["lapcvae"],
            "rule": "edit_region",
        },
    },
}

# What a figure may read, per resolution (the `figures` rule declares each to Snakemake).
INPUTS = {
    "test": "the prepared test split, {prepared}/{res}/test.npy",
    "train": "the prepared training split, {prepared}/{res}/train.npy",
    "attributes": "the prepared attributes, {prepared}/attributes.csv",
    "samples": "each model's samples, {results}/eval/{res}/{model}/samples.npy (and samples_fitted.npy if there)",
    "reconstructions": "each model's reconstructions, {results}/eval/{res}/{model}/reconstructions.npy",
    "checkpoint": "the whole checkpoint of each of its `models` (core/registry.py checkpoint)",
    "training_logs": "the training logs beside the checkpoints (not declared: see docs/ARCHITECTURE.md)",
}
FILE_PATTERN = "figures/{name}_{res}.png"  # under paths.results
# The group `lapcvae figures` draws (rule `figures`); the other groups' commands compute more than a figure.
FIGURES_COMMAND = "figures"


@dataclass(frozen=True)
class FigureSpec:
    """One figure of the report and everything the suite needs to draw, declare and show it."""

    name: str
    group: str  # the FIGURES group, i.e. the command that draws it
    title: str
    caption: str
    draw: str  # "module:function"
    inputs: tuple[str, ...]
    models: tuple[str, ...] = ()  # empty: every model of the resolution
    rule: str = ""  # the Snakemake rule that writes it; defaults to the group

    @property
    def drawn_by(self) -> str:
        return self.rule or self.group

    @property
    def full_caption(self) -> str:
        return f"{self.title}: {self.caption}"

    def shown_with(self, models: Sequence[str]) -> bool:
        """Whether every model it needs is among `models` (those a resolution runs)."""
        return set(self.models) <= set(models)


def _spec(group: str, name: str, row: Mapping[str, Any]) -> FigureSpec:
    unknown = sorted(set(row["inputs"]) - set(INPUTS))
    if unknown:
        raise ValueError(f"figure {name!r} reads {unknown}, which is no input a figure can declare; "
                         f"pick from {sorted(INPUTS)} (core/figures.py INPUTS)")
    return FigureSpec(name, group, row["title"], row["caption"], row["draw"], tuple(row["inputs"]),
                      tuple(row.get("models", ())), row.get("rule", ""))


def specs(group: str | None = None) -> list[FigureSpec]:
    """Every figure (or one group's), in table order."""
    return [_spec(name_of_group, name, row) for name_of_group, rows in FIGURES.items()
            if group is None or name_of_group == group for name, row in rows.items()]


def names() -> list[str]:
    return [figure.name for figure in specs()]


def spec(name: str) -> FigureSpec:
    for figure in specs():
        if figure.name == name:
            return figure
    raise ValueError(f"unknown figure {name!r}; known figures: {', '.join(names())} (add one in core/figures.py)")


def drawn_by(rule: str) -> list[FigureSpec]:
    """The figures one Snakemake rule writes."""
    return [figure for figure in specs() if figure.drawn_by == rule]


def in_report_order() -> list[FigureSpec]:
    """The paper's figures by number, then the others in table order."""
    def key(figure: FigureSpec) -> tuple[int, int]:
        number = figure.title.removeprefix("Figure ")
        return (0, int(number)) if number.isdigit() else (1, 0)
    return sorted(specs(), key=key)


def figure_file(results: str, name: str, res: int | str) -> str:
    return f"{results}/{FILE_PATTERN.format(name=name, res=res)}"


def file_name(name: str, res: int | str) -> str:
    """The figure's file name, in the figures folder."""
    return FILE_PATTERN.format(name=name, res=res).rsplit("/", 1)[-1]
