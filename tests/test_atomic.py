"""The one atomic writer (core.atomic): a writer that fails halfway leaves neither the target nor a temporary."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

from core import atomic


class Halfway(RuntimeError):
    pass


def test_a_writer_that_raises_halfway_leaves_nothing_behind(tmp_path):
    final = tmp_path / "out" / "table.csv"
    with pytest.raises(Halfway), atomic.atomic_path(final) as temporary:
        temporary.write_text("half a ta")  # some bytes reach the disk, then the writer fails
        assert temporary.parent == final.parent and temporary.exists()
        raise Halfway
    assert list((tmp_path / "out").iterdir()) == []


def test_a_failed_rewrite_keeps_the_old_file_whole(tmp_path):
    final = atomic.write_text(tmp_path / "report.md", "old report\n")
    with pytest.raises(Halfway), atomic.npy_memmap(tmp_path / "x.npy", (4, 3), np.uint8) as array:
        array[:2] = 7
        raise Halfway
    with pytest.raises(Halfway), atomic.atomic_path(final) as temporary:
        temporary.write_text("new rep")
        raise Halfway
    assert final.read_text() == "old report\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["report.md"]


def test_a_folder_that_fails_halfway_leaves_the_old_folder(tmp_path):
    out = tmp_path / "prepared"
    with atomic.atomic_directory(out) as staging:
        (staging / "a.txt").write_text("first")
    with pytest.raises(Halfway), atomic.atomic_directory(out) as staging:
        (staging / "a.txt").write_text("sec")
        raise Halfway
    assert (out / "a.txt").read_text() == "first"
    assert [path.name for path in tmp_path.iterdir()] == ["prepared"]


def test_every_wrapper_writes_what_it_was_given_under_the_final_name(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    atomic.save_npy(tmp_path / "a.npy", array)
    with atomic.npy_memmap(tmp_path / "m.npy", array.shape, np.uint8) as mapped:
        mapped[:] = array
    atomic.write_json(tmp_path / "s.json", {"x": float("nan"), "y": [1.5]})
    atomic.write_csv(tmp_path / "t.csv", pd.DataFrame({"a": [1, 2]}))
    atomic.save_torch({"w": torch.ones(2)}, tmp_path / "c.pt")
    figure = Figure()
    figure.add_subplot().plot([0, 1])
    atomic.save_figure(figure, tmp_path / "f.png")
    assert np.array_equal(np.load(tmp_path / "a.npy"), array)
    assert np.array_equal(np.load(tmp_path / "m.npy"), array)
    assert json.loads((tmp_path / "s.json").read_text()) == {"x": None, "y": [1.5]}  # strict JSON
    assert (tmp_path / "t.csv").read_text() == "a\n1\n2\n"
    assert torch.equal(torch.load(tmp_path / "c.pt", weights_only=True)["w"], torch.ones(2))
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.npy", "c.pt", "f.png", "m.npy", "s.json",
                                                                "t.csv"]


def test_a_writer_that_writes_elsewhere_is_an_error_not_a_silent_no_op(tmp_path):
    with pytest.raises(FileNotFoundError, match="wrote elsewhere"), atomic.atomic_path(tmp_path / "x.npy") as temp:
        np.save(str(temp), np.zeros(2))  # np.save appends .npy to a path that lacks it
    assert not (tmp_path / "x.npy").exists()


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    (tmp_path / "prepared.tmp-999").mkdir()
    (tmp_path / "prepared.old-999").mkdir()
    (tmp_path / "other.tmp-999").write_text("not ours")
    with atomic.atomic_directory(tmp_path / "prepared"):
        pass
    assert sorted(path.name for path in tmp_path.iterdir()) == ["other.tmp-999", "prepared"]


# Files allowed to hand-roll a temporary-then-rename write: none; every write goes through core.atomic.
NOT_YET_ROUTED: set[str] = set()


def test_no_module_hand_rolls_its_own_rename():
    root = Path(__file__).resolve().parent.parent
    sources = [path for folder in ("core", "data", "models", "baselines", "eval", "workflow", "benchmarks")
               for path in (root / folder).rglob("*") if path.suffix in (".py", ".smk")]
    hand_rolled = sorted(str(path.relative_to(root)) for path in sources
                         if path != root / "core/atomic.py" and re.search(r"os\.replace\(|os\.rename\(|mkstemp\(",
                                                                           path.read_text()))
    assert set(hand_rolled) <= NOT_YET_ROUTED, f"write through core.atomic instead: {hand_rolled}"
