"""study.html driven in a real headless Chromium: participant id, a seeded subset with attention checks, clicks and
arrow keys, one step back, CSV download, completion code; the page's subset and code match the analysis's."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import NEEDS_CHROMIUM, headless_chromium

from eval.human_study import completion_code, participant_trials
from workflow.commands.study import analyze_main, export_main

RESOLUTION = 16
POOL = 6  # comparison pairs per experiment
PAIRS = 3  # of them, each participant's
CHECKS = 2  # attention checks per experiment
TRIALS = PAIRS + CHECKS
SIDES = ("left", "right")

pytestmark = NEEDS_CHROMIUM


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """A study of 6 pairs per experiment, 3 per participant, 2 attention checks, exported from tiny random images;
    returns the study folder."""
    rng = np.random.default_rng(0)
    originals = rng.integers(0, 256, (POOL + CHECKS, 3, RESOLUTION, RESOLUTION), dtype=np.uint8)
    (tmp_path / "prepared" / str(RESOLUTION)).mkdir(parents=True)
    np.save(tmp_path / "prepared" / str(RESOLUTION) / "test.npy", originals)
    for model, images in (("vae", originals // 2), ("lapcvae", 255 - originals)):
        (tmp_path / "eval" / str(RESOLUTION) / model).mkdir(parents=True)
        np.save(tmp_path / "eval" / str(RESOLUTION) / model / "reconstructions.npy", images)
    params = tmp_path / "p.yaml"
    params.write_text(yaml.safe_dump({"human_study": {
        "resolution": RESOLUTION, "models": ["vae", "lapcvae"], "pairs": POOL, "display_size": 64,
        "pairs_per_participant": PAIRS, "attention_checks": {"per_experiment": CHECKS}}}))
    export_main(["--params", str(params), "--resolution", str(RESOLUTION),
                 "--eval-dir", str(tmp_path / "eval"), "--prepared",
                 str(tmp_path / "prepared"), "--out", str(tmp_path / "study")])
    return tmp_path / "study"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[tuple[object, Path]]:
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with headless_chromium(tmp_path / "profile", 900, 1000, downloads) as driver:
        yield driver, downloads


def wait_for(condition, what: str, timeout: float = 10.0):
    """Poll `condition()` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def finished(download: Path) -> bool:
    """Whether Chromium has written `download`: it reserves the name with an empty file, writes a .crdownload
    beside it and renames that over the name when done."""
    partials = list(download.parent.glob("*.crdownload"))
    return download.is_file() and download.stat().st_size > 0 and not partials


def test_study_page_in_headless_chromium(study: Path, browser: tuple, tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver, downloads = browser
    driver.get((study / "study.html").as_uri())
    order = driver.execute_script("return studyOrder('p1').map((part) => part.pairs.map((pair) => pair.id))")
    assert order == driver.execute_script("return studyOrder('p1').map((part) => part.pairs.map((p) => p.id))")
    others = [driver.execute_script(f"return studyOrder('{name}').map((part) => part.pairs.map((p) => p.id))")
              for name in ("p2", "p3", "p4")]
    assert any(other != order for other in others), "each participant gets an own order"
    with (study / "key.csv").open(newline="") as handle:
        key = {row["pair_id"]: row for row in csv.DictReader(handle)}
    design = json.loads((study / "design.json").read_text())
    ids = {role: {experiment: sorted(pair_id for pair_id, row in key.items()
                                     if row["role"] == role and row["experiment"] == experiment)
                  for experiment in ("without_original", "with_original")} for role in ("comparison", "attention")}
    for name, shown in zip(("p1", "p2", "p3", "p4"), [order, *others], strict=True):
        # The analysis recomputes exactly the page's subset and order from key.csv and design.json.
        trials = participant_trials(ids["comparison"], ids["attention"], PAIRS, design["assignment_seed"], name)
        assert shown == [trials["without_original"], trials["with_original"]]

    state = {"answered": 0}

    def trial(attribute: str) -> str:
        return driver.find_element(By.ID, "trial-screen").get_attribute(attribute)

    def shown(part: int, index: int) -> str:
        """Wait until pair `index` of part `part` is on screen with its images loaded; return its id."""
        wait_for(lambda: trial("data-ready") == "1"
                 and driver.find_element(By.ID, "progress").text == f"Part {part + 1} of 2, pair {index + 1} of "
                 f"{TRIALS}", f"pair {index + 1} of part {part + 1}")
        return trial("data-pair-id")

    def start(participant: str) -> None:
        driver.find_element(By.ID, "participant").send_keys(participant)
        driver.find_element(By.ID, "start-button").click()

    def choose(side: str) -> None:
        """Alternate clicks and arrow keys so that both input paths are exercised."""
        if state["answered"] % 2 == 0:
            driver.find_element(By.ID, f"{side}-choice").click()
        else:
            ActionChains(driver).send_keys(Keys.ARROW_LEFT if side == "left" else Keys.ARROW_RIGHT).perform()
        state["answered"] += 1

    start("p1")
    expected: dict[str, str] = {}
    presented: list[str] = []
    for part, experiment in enumerate(("without_original", "with_original")):
        driver.find_element(By.ID, "begin-button").click()
        for index in range(TRIALS):
            pair_id = shown(part, index)
            assert trial("data-experiment") == experiment
            assert driver.find_element(By.ID, "original-box").is_displayed() == (experiment == "with_original")
            if part == 1 and index == 2:
                driver.save_screenshot(str(tmp_path / "mid_study.png"))
            side = SIDES[(index * 3 + part) % 2]
            if key[pair_id]["role"] == "attention":  # an attentive participant: the intact face
                side = "left" if key[pair_id]["left_model"] == "intact" else "right"
            if part == 0 and index == 1:
                # Answer the other side, then go back one step: the same pair returns, and the new answer replaces
                # the first one (on an attention check, a wrong answer corrected).
                choose(SIDES[1 - SIDES.index(side)])
                shown(part, index + 1)
                ActionChains(driver).send_keys(Keys.BACKSPACE).perform()
                assert shown(part, index) == pair_id
            choose(side)
            expected[pair_id] = side
            presented.append(pair_id)
            if part == 0 and index == 2:
                # The same participant in a new tab (the first one closed or crashed) resumes at the next pair.
                driver.switch_to.new_window("tab")
                driver.get((study / "study.html").as_uri())
                start("p1")
                assert shown(part, index + 1) == order[0][index + 1]
    assert presented == order[0] + order[1], "pairs appear in the participant's seeded order"

    download = downloads / "responses_p1.csv"
    wait_for(lambda: finished(download), f"the download {download}")
    with download.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["pair_id"] for row in rows] == presented, "every pair answered once, in the order shown"
    assert {row["pair_id"]: row["side"] for row in rows} == expected
    assert {row["participant"] for row in rows} == {"p1"}
    assert all(int(row["response_ms"]) >= 0 for row in rows)
    assert all(key[row["pair_id"]]["experiment"] == row["experiment"] for row in rows)
    # The completion code on the last screen is the one the analysis derives from the downloaded answers.
    shown_code = driver.find_element(By.ID, "completion-code").text
    assert shown_code == completion_code("p1", {row["pair_id"]: row["side"] for row in rows})

    analyze_main(["--key", str(study / "key.csv"), "--responses", str(download), "--out",
                  str(tmp_path / "table2.csv")])
    with (tmp_path / "table2.csv").open(newline="") as handle:
        table = {(row["experiment"], row["model"]): row for row in csv.DictReader(handle)}
    for experiment in ("without_original", "with_original"):
        picks = [key[pair_id][f"{side}_model"] for pair_id, side in expected.items()
                 if key[pair_id]["experiment"] == experiment and key[pair_id]["role"] == "comparison"]
        assert len(picks) == PAIRS
        assert float(table[experiment, "lapcvae"]["preference_mean"]) == pytest.approx(
            100 * picks.count("lapcvae") / PAIRS)
        assert int(table[experiment, "lapcvae"]["missing"]) == 0
        assert int(table[experiment, "lapcvae"]["dropped_participants"]) == 0
