"""README.md names only what exists: its `make` targets, `lapcvae` commands and repository paths; its Python
example runs against a real (small) checkpoint."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from core.params import REPO_ROOT, load_params
from models.checkpoint import save_model
from models.lapcvae import LapCVAE
from workflow.cli import COMMANDS

README = REPO_ROOT / "README.md"
# What a run, the set-up or the user makes: named by the README, absent from a fresh clone.
MADE_BY_A_RUN = ("results", "data/raw", "data/prepared", ".venv", "site-packages", "study_responses")
USER_FILES = {"img_align_celeba.zip", "img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt"}  # CelebA's
PATH_PATTERN = re.compile(r"(?<![\w./:<-])((?:\.?[\w-]+/)+[\w.-]*|[\w-]+\.(?:md|yaml|yml|toml|py|cff|png|txt|zip))"
                          r"(?![\w/])")


def make_targets(makefile: Path = REPO_ROOT / "Makefile") -> set[str]:
    return {match.group(1) for match in re.finditer(r"^([A-Za-z][\w-]*):", makefile.read_text(), re.MULTILINE)}


def named_make_targets(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])make ([a-z][\w-]*)", text))


def named_commands(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])lapcvae ([a-z][a-z-]*)", text))


def named_paths(text: str) -> set[str]:
    """Repository paths in the text's code (spans and blocks) and link targets, without URLs and placeholders."""
    blocks = [re.sub(r"(^|\s)#.*", "", block) for block in re.findall(r"```.*?```", text, re.DOTALL)]  # no comments
    code = blocks + re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text,
                                                                                         flags=re.DOTALL))
    links = re.findall(r"\]\(([^)\s#]+)", text)
    candidates = {match.group(1).rstrip(".") for span in code
                  for match in PATH_PATTERN.finditer(re.sub(r"\w+://\S+", " ", span))}
    candidates |= {link for link in links if "://" not in link}
    return {path for path in candidates
            if not any(mark in path for mark in "{}<>*") and path.rstrip("/") not in USER_FILES
            and not any(path == made or path.startswith(made + "/") for made in MADE_BY_A_RUN)}


def missing_references(text: str, root: Path = REPO_ROOT) -> list[str]:
    """Every make target, lapcvae command and repository path the text names that does not exist."""
    targets, commands = make_targets(root / "Makefile"), set(COMMANDS)
    missing = [f"make {name}" for name in sorted(named_make_targets(text) - targets)]
    missing += [f"lapcvae {name}" for name in sorted(named_commands(text) - commands)]
    missing += [path for path in sorted(named_paths(text)) if not (root / path).exists()]
    return missing


def test_readme_names_only_targets_commands_and_paths_that_exist():
    text = README.read_text()
    assert {"smoke", "run", "test", "setup"} <= named_make_targets(text)
    assert {"reconstruct", "sample", "results-doc"} <= named_commands(text)
    assert {"config/paper.yaml", "profiles/slurm/config.yaml", "docs/results.md", "LICENSE"} <= named_paths(text)
    assert missing_references(text) == []


def test_a_readme_naming_what_does_not_exist_fails_the_check():
    text = ("Run `make smoke`, then `make deploy`; `lapcvae sample` and `lapcvae teleport --fast`; read\n"
            "[the guide](docs/no-such-guide.md) and `config/paper.yaml`, edit `config/nowhere.yaml`;\n"
            "outputs go to `results/report.html` (made by a run).\n")
    assert missing_references(text) == ["make deploy", "lapcvae teleport", "config/nowhere.yaml",
                                        "docs/no-such-guide.md"]


def test_readme_line_count_is_a_manual_not_a_notebook():
    assert len(README.read_text().splitlines()) <= 210


def test_readme_python_example_runs_on_a_small_checkpoint(tmp_path, monkeypatch):
    """The README's Python block, verbatim, on a smoke-size LapCVAE and a prepared test array at its paths."""
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.DOTALL).group(1)
    params = load_params("config/smoke.yaml")
    model = LapCVAE.from_params(params["lapcvae"]["64"], 64, use_m=True)
    (tmp_path / "results/models/64/lapcvae").mkdir(parents=True)
    save_model(tmp_path / "results/models/64/lapcvae/level0.pt", model, {"steps": 0})
    (tmp_path / "data/prepared/64").mkdir(parents=True)
    test_images = np.random.default_rng(0).integers(0, 256, size=(10, 3, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "data/prepared/64/test.npy", test_images)
    monkeypatch.chdir(tmp_path)

    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)

    reconstructions, samples = namespace["reconstructions"], namespace["samples"]
    assert reconstructions.shape == (8, 3, 64, 64) and samples.shape == (16, 3, 64, 64)
    assert float(reconstructions.min()) >= 0.0 and float(reconstructions.max()) <= 1.0
    with torch.no_grad():  # the loaded model computes what the saved one does on the same images
        expected = model.eval().reconstruct(torch.from_numpy(test_images[:8]).float() / 255)
    torch.testing.assert_close(reconstructions, expected)
    assert torch.equal(samples, namespace["model"].sample(16, seed=0))


def test_docs_links_point_at_files_that_exist():
    """Every relative link of docs/*.md (the README's reference pages) resolves from docs/."""
    broken = [f"{page.name}: {target}" for page in sorted((REPO_ROOT / "docs").glob("*.md"))
              for target in re.findall(r"\]\(([^)\s#]+)", page.read_text())
              if "://" not in target and not (page.parent / target).exists()]
    assert broken == []
