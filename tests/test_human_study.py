"""Human study (section 5.1.2, Table 2): blind, deterministic export with per-participant subsets and attention
checks, and an analysis that matches hand counts and drops participants who fail the checks."""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from eval.human_study import completion_code, participant_trials
from eval.plotting import DISPLAY_NAMES
from eval.study_analysis import fleiss_kappa, read_key
from workflow.commands.study import analyze_main, export_main

RESOLUTION = 16
MODELS = ("vae", "lapcvae")


def write_inputs(root: Path, test_images: int = 12, seed: int = 0) -> dict[str, np.ndarray]:
    """Tiny originals and two models' distinct "reconstructions" of them, laid out like the pipeline's."""
    rng = np.random.default_rng(seed)
    originals = rng.integers(0, 256, (test_images, 3, RESOLUTION, RESOLUTION), dtype=np.uint8)
    arrays = {"original": originals, "vae": originals // 2, "lapcvae": 255 - originals}
    (root / "prepared" / str(RESOLUTION)).mkdir(parents=True)
    np.save(root / "prepared" / str(RESOLUTION) / "test.npy", originals)
    for model in MODELS:
        (root / "eval" / str(RESOLUTION) / model).mkdir(parents=True)
        np.save(root / "eval" / str(RESOLUTION) / model / "reconstructions.npy", arrays[model])
    return arrays


def write_params(path: Path, seed: int = 0, pairs: int = 50, per_participant: int = 100, checks: int = 5,
                 min_correct: float = 0.8) -> Path:
    path.write_text(yaml.safe_dump({"seed": seed, "human_study": {
        "resolution": RESOLUTION, "models": list(MODELS), "pairs": pairs, "display_size": 64,
        "pairs_per_participant": per_participant,
        "attention_checks": {"per_experiment": checks, "min_correct": min_correct}}}))
    return path


def export(root: Path, out: Path, params: Path) -> None:
    export_main(["--params", str(params), "--resolution", str(RESOLUTION),
                 "--eval-dir", str(root / "eval"), "--prepared", str(root / "prepared"),
                 "--out", str(out)])


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def comparisons(key: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in key if row["role"] == "comparison"]


def checks(key: list[dict[str, str]]) -> list[dict[str, str]]:
    return [row for row in key if row["role"] == "attention"]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_export_is_deterministic_blind_and_shows_the_right_images(tmp_path: Path) -> None:
    arrays = write_inputs(tmp_path)
    params = write_params(tmp_path / "p.yaml")
    export(tmp_path, tmp_path / "a", params)
    export(tmp_path, tmp_path / "b", params)
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
    export(tmp_path, tmp_path / "c", write_params(tmp_path / "q.yaml", seed=1))
    assert (tmp_path / "c" / "key.csv").read_bytes() != (tmp_path / "a" / "key.csv").read_bytes()

    key = comparisons(read_rows(tmp_path / "a" / "key.csv"))
    # 50 pairs asked for, 12 test images: capped at 12 pairs per experiment, every test row once in each.
    for experiment in ("without_original", "with_original"):
        rows = [int(row["image_row"]) for row in key if row["experiment"] == experiment]
        assert sorted(rows) == list(range(12))
    lefts = {row["left_model"] for row in key}
    assert lefts == set(MODELS), "left/right order must vary from pair to pair"
    for row in key:
        for side in ("left", "right"):
            shown = np.asarray(Image.open(tmp_path / "a" / "images" / f"{row[side + '_image']}.png"))
            assert np.array_equal(shown, arrays[row[side + "_model"]][int(row["image_row"])].transpose(1, 2, 0))
        if row["experiment"] == "with_original":
            shown = np.asarray(Image.open(tmp_path / "a" / "images" / f"{row['original_image']}.png"))
            assert np.array_equal(shown, arrays["original"][int(row["image_row"])].transpose(1, 2, 0))
        else:
            assert row["original_image"] == ""

    page = (tmp_path / "a" / "study.html").read_bytes().lower()
    names = [path.name.lower() for path in (tmp_path / "a" / "images").iterdir()]
    for name in {*DISPLAY_NAMES, *DISPLAY_NAMES.values()}:
        assert name.lower().encode() not in page, f"study.html names {name}"
        assert not any(name.lower() in file_name for file_name in names), f"an image file name contains {name}"
    assert b"http" not in page and b"<link" not in page, "the page must not load anything from outside"
    # Ids must not sort by model or by side, and the page's pair order must not follow the test rows.
    assert 0 < sum(row["left_image"] < row["right_image"] for row in key) < len(key)
    model_ids = [(row["left_image"], row["right_image"])[::1 if row["left_model"] == "vae" else -1] for row in key]
    assert 0 < sum(vae_id < lapcvae_id for vae_id, lapcvae_id in model_ids) < len(key)
    rows_by_id = {row["pair_id"]: int(row["image_row"]) for row in key}
    shown_order = [rows_by_id[pair_id] for pair_id in sorted(rows_by_id)]
    assert shown_order != sorted(shown_order)


def test_export_rejects_bad_inputs_and_leaves_nothing_behind(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    params = write_params(tmp_path / "p.yaml")
    (tmp_path / "eval" / str(RESOLUTION) / "lapcvae" / "reconstructions.npy").unlink()
    with pytest.raises(FileNotFoundError, match="lapcvae evaluate"):
        export(tmp_path, tmp_path / "out", params)
    np.save(tmp_path / "eval" / str(RESOLUTION) / "lapcvae" / "reconstructions.npy",
            np.zeros((5, 3, RESOLUTION, RESOLUTION), dtype=np.uint8))
    with pytest.raises(ValueError, match="test split has"):
        export(tmp_path, tmp_path / "out", params)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["eval", "p.yaml", "prepared"]


def test_reexport_keeps_files_it_did_not_write(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    params = write_params(tmp_path / "p.yaml")
    export(tmp_path, tmp_path / "out", params)
    (tmp_path / "out" / "responses_p1.csv").write_text("kept\n")
    export(tmp_path, tmp_path / "out", write_params(tmp_path / "q.yaml", seed=3))
    assert (tmp_path / "out" / "responses_p1.csv").read_text() == "kept\n"
    assert len(comparisons(read_rows(tmp_path / "out" / "key.csv"))) == 24


def test_fleiss_kappa_of_a_small_table() -> None:
    # Two raters, three items: agree, disagree, agree. P_bar = 2/3, p = (1/2, 1/2), P_e = 1/2, kappa = 1/3.
    kappa, agreement, items = fleiss_kappa(np.array([[2, 0], [1, 1], [0, 2], [1, 0]]))
    assert items == 3  # the item rated once is left out
    assert agreement == pytest.approx(2 / 3)
    assert kappa == pytest.approx(1 / 3)


def two_sided_binomial_p(successes: int, trials: int) -> float:
    """Exact two-sided p for a fair coin: twice the smaller tail, capped at 1."""
    tail = min(successes, trials - successes)
    return min(1.0, 2 * sum(math.comb(trials, k) for k in range(tail + 1)) / 2**trials)


def answer(participant: str, pair: dict[str, str], chosen: str, response_ms: int = 800) -> dict[str, str]:
    """A response row choosing the side that shows `chosen` (a model, or intact/degraded on a check)."""
    side = "left" if pair["left_model"] == chosen else "right"
    return {"participant": participant, "experiment": pair["experiment"], "pair_id": pair["pair_id"], "side": side,
            "response_ms": str(response_ms)}


def simulate_answers(key: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    """Three participants who prefer lapcvae to different degrees; p3 skips every third pair. All pass the checks."""
    rng = np.random.default_rng(7)
    answers: dict[str, list[dict[str, str]]] = {}
    for participant, preference in (("p1", 0.9), ("p2", 0.7), ("p3", 0.5)):
        rows = []
        for index, pair in enumerate(comparisons(key)):
            if participant == "p3" and index % 3 == 0:
                continue
            chosen = "lapcvae" if rng.random() < preference else "vae"
            rows.append(answer(participant, pair, chosen, int(rng.integers(200, 3000))))
        answers[participant] = rows
    return answers


def check_answers(key: list[dict[str, str]], participant: str, wrong: int = 0) -> list[dict[str, str]]:
    """`participant`'s answers to every attention check, the first `wrong` of them wrong."""
    return [answer(participant, pair, "degraded" if index < wrong else "intact")
            for index, pair in enumerate(checks(key))]


def write_responses(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["participant", "experiment", "pair_id", "side", "response_ms"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_analysis_reproduces_the_table_computed_by_hand(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    export(tmp_path, tmp_path / "study", write_params(tmp_path / "p.yaml"))
    full_key = read_rows(tmp_path / "study" / "key.csv")
    key = comparisons(full_key)
    answers = simulate_answers(full_key)
    files = [write_responses(tmp_path / f"{name}.csv", rows + check_answers(full_key, name))
             for name, rows in answers.items()]
    # p1's answers arrive in two files (e.g. a resumed session): they count as one participant.
    files[0:1] = [write_responses(tmp_path / "p1a.csv", answers["p1"][:5]),
                  write_responses(tmp_path / "p1b.csv", answers["p1"][5:] + check_answers(full_key, "p1"))]
    analyze_main(["--key", str(tmp_path / "study" / "key.csv"), "--responses", *map(str, files),
                  "--out", str(tmp_path / "table2.csv")])
    table = {(row["experiment"], row["model"]): row for row in read_rows(tmp_path / "table2.csv")}
    summary = json.loads((tmp_path / "table2.json").read_text())

    model_of = {(pair["pair_id"], side): pair[f"{side}_model"] for pair in key for side in ("left", "right")}
    for experiment in ("without_original", "with_original"):
        chosen = {name: [model_of[row["pair_id"], row["side"]] for row in rows if row["experiment"] == experiment]
                  for name, rows in answers.items()}
        everything = [model for models in chosen.values() for model in models]
        for model in MODELS:
            shares = [100 * models.count(model) / len(models) for models in chosen.values()]
            row = table[experiment, model]
            assert float(row["preference_mean"]) == pytest.approx(statistics.mean(shares))
            assert float(row["preference_std"]) == pytest.approx(statistics.stdev(shares))
            assert float(row["preference_pooled"]) == pytest.approx(100 * everything.count(model) / len(everything))
            assert int(row["answers"]) == len(everything) == 12 * 3 - 4
            assert int(row["missing"]) == 4
            assert float(row["binomial_p"]) == pytest.approx(
                two_sided_binomial_p(everything.count("lapcvae"), len(everything)))
        # Agreement by hand: per pair, the share of agreeing rater pairs among all rater pairs.
        per_pair: dict[str, list[str]] = {}
        for rows in answers.values():
            for row in rows:
                if row["experiment"] == experiment:
                    per_pair.setdefault(row["pair_id"], []).append(model_of[row["pair_id"], row["side"]])
        item_agreement = []
        for models in per_pair.values():
            rater_pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
            item_agreement.append(sum(a == b for a, b in rater_pairs) / len(rater_pairs))
        p_lapcvae = everything.count("lapcvae") / len(everything)
        chance = p_lapcvae**2 + (1 - p_lapcvae) ** 2
        expected_kappa = (statistics.mean(item_agreement) - chance) / (1 - chance)
        assert float(table[experiment, "vae"]["pairwise_agreement"]) == pytest.approx(
            statistics.mean(item_agreement))
        assert float(table[experiment, "vae"]["fleiss_kappa"]) == pytest.approx(expected_kappa)
        assert int(table[experiment, "vae"]["multi_rated_pairs"]) == 12
        assert summary["experiments"][experiment]["median_response_ms"] == statistics.median(
            int(row["response_ms"]) for rows in answers.values() for row in rows if row["experiment"] == experiment)


@pytest.mark.parametrize(("change", "message"), [
    ({"pair_id": "feedfacecafe"}, "not in the key"),
    ({"experiment": "with_original"}, "belongs to experiment without_original"),
    ({"side": "up"}, "must be left or right"),
    ({"response_ms": "-5"}, "non-negative"),
    ({"pair_id": "FIRST"}, "already answered"),
])
def test_analysis_rejects_responses_that_do_not_match_the_key(
    tmp_path: Path, change: dict[str, str], message: str
) -> None:
    write_inputs(tmp_path, test_images=4)
    export(tmp_path, tmp_path / "study", write_params(tmp_path / "p.yaml"))
    key = read_key(tmp_path / "study" / "key.csv")
    first, second = [pair for pair in key.values() if pair.experiment == "without_original"][:2]
    rows = [{"participant": "p1", "experiment": pair.experiment, "pair_id": pair.pair_id, "side": "left",
             "response_ms": "812"} for pair in (first, second)]
    rows[1].update({name: first.pair_id if value == "FIRST" else value for name, value in change.items()})
    responses = write_responses(tmp_path / "bad.csv", rows)
    with pytest.raises(ValueError, match=rf"bad\.csv line 3: .*{message}"):
        analyze_main(["--key", str(tmp_path / "study" / "key.csv"), "--responses", str(responses),
                      "--out", str(tmp_path / "table2.csv")])
    assert not (tmp_path / "table2.csv").exists()


def page_data(study: Path) -> dict:
    """The JSON study.html embeds (what the page's own script reads)."""
    page = (study / "study.html").read_text()
    start = page.index("const STUDY = ") + len("const STUDY = ")
    return json.loads(page[start: page.index(";\n", start)].replace("<\\/", "</"))


def test_each_participant_gets_a_seeded_subset_with_every_attention_check(tmp_path: Path) -> None:
    write_inputs(tmp_path, test_images=30)
    export(tmp_path, tmp_path / "study", write_params(tmp_path / "p.yaml", pairs=20, per_participant=6, checks=3))
    key = read_rows(tmp_path / "study" / "key.csv")
    design = json.loads((tmp_path / "study" / "design.json").read_text())
    assert design["pairs_per_participant"] == 6 and design["attention_checks_per_experiment"] == 3
    data = page_data(tmp_path / "study")
    assert data["pairsPerParticipant"] == 6 and data["assignmentSeed"] == design["assignment_seed"]
    # The page's lists are the key's, so the page and the analysis assign the same trials.
    pool = {part["name"]: [pair["id"] for pair in part["pairs"]] for part in data["experiments"]}
    check_ids = {part["name"]: [pair["id"] for pair in part["checks"]] for part in data["experiments"]}
    for experiment in ("without_original", "with_original"):
        assert pool[experiment] == sorted(row["pair_id"] for row in comparisons(key) if row["experiment"] == experiment)
        assert check_ids[experiment] == sorted(row["pair_id"] for row in checks(key)
                                               if row["experiment"] == experiment)

    def trials(participant: str) -> dict[str, list[str]]:
        return participant_trials(pool, check_ids, 6, design["assignment_seed"], participant)

    assert trials("p1") == trials("p1")
    assert trials("p1") != trials("p2")
    covered: set[str] = set()
    for participant in [f"p{number}" for number in range(40)]:
        for experiment, shown in trials(participant).items():
            assert len(shown) == len(set(shown)) == 6 + 3
            assert set(check_ids[experiment]) <= set(shown)
            assert set(shown) - set(check_ids[experiment]) <= set(pool[experiment])
            covered |= set(shown)
    assert covered == {pair_id for ids in (*pool.values(), *check_ids.values()) for pair_id in ids}
    # Checks are mixed among the pairs, not all at the end.
    positions = [trials(f"p{number}")["with_original"].index(check_ids["with_original"][0]) for number in range(40)]
    assert len(set(positions)) > 3


def test_attention_checks_pair_a_test_face_with_its_degraded_copy(tmp_path: Path) -> None:
    arrays = write_inputs(tmp_path, test_images=30)
    export(tmp_path, tmp_path / "study", write_params(tmp_path / "p.yaml", pairs=20, checks=3))
    key = read_rows(tmp_path / "study" / "key.csv")
    attention = checks(key)
    assert len(attention) == 2 * 3
    compared_rows = {int(row["image_row"]) for row in comparisons(key)}
    assert not compared_rows & {int(row["image_row"]) for row in attention}, "checks use faces not compared"
    assert {row["left_model"] for row in attention} == {"intact", "degraded"}, "the degraded side varies"

    def shown(name: str) -> np.ndarray:
        return np.asarray(Image.open(tmp_path / "study" / "images" / f"{name}.png")).astype(int)

    for row in attention:
        original = arrays["original"][int(row["image_row"])].transpose(1, 2, 0).astype(int)  # (H, W, 3)
        sides = {row[f"{side}_model"]: shown(row[f"{side}_image"]) for side in ("left", "right")}
        assert np.array_equal(sides["intact"], original)
        assert np.abs(sides["degraded"] - original).mean() > 15, "the degraded copy must be obviously worse"
        if row["experiment"] == "with_original":
            assert np.array_equal(shown(row["original_image"]), original)


def analyze_study(tmp_path: Path, files: list[Path], *extra: str) -> dict[str, dict[str, str]]:
    """Run `lapcvae analyze-study`; participants.csv by participant."""
    analyze_main(["--params", str(tmp_path / "p.yaml"), "--key", str(tmp_path / "study" / "key.csv"),
                  "--responses", *map(str, files), "--out", str(tmp_path / "table2.csv"), *extra])
    return {row["participant"]: row for row in read_rows(tmp_path / "participants.csv")}


def test_analysis_drops_participants_who_fail_the_attention_checks(tmp_path: Path) -> None:
    write_inputs(tmp_path)
    export(tmp_path, tmp_path / "study", write_params(tmp_path / "p.yaml", checks=5, min_correct=0.8))
    key = read_rows(tmp_path / "study" / "key.csv")
    pairs = comparisons(key)
    # keen: 10 of 10 checks right and prefers lapcvae; borderline: 8 of 10, at the threshold; careless: 7 of 10
    # and always picks vae, which would pull the preference down if it counted.
    files = [
        write_responses(tmp_path / "keen.csv", [answer("keen", pair, "lapcvae") for pair in pairs]
                        + check_answers(key, "keen")),
        write_responses(tmp_path / "borderline.csv", [answer("borderline", pair, "lapcvae") for pair in pairs[::2]]
                        + [answer("borderline", pair, "vae") for pair in pairs[1::2]]
                        + check_answers(key, "borderline", wrong=2)),
        write_responses(tmp_path / "careless.csv", [answer("careless", pair, "vae") for pair in pairs]
                        + check_answers(key, "careless", wrong=3)),
    ]
    screening = analyze_study(tmp_path, files)
    assert {name: row["kept"] for name, row in screening.items()} == {
        "keen": "True", "borderline": "True", "careless": "False"}
    assert screening["careless"]["reason"] == "7 of 10 attention checks right, below the required share 0.8"
    assert (screening["borderline"]["checks_correct"], screening["borderline"]["checks_answered"]) == ("8", "10")
    table = {(row["experiment"], row["model"]): row for row in read_rows(tmp_path / "table2.csv")}
    summary = json.loads((tmp_path / "table2.json").read_text())
    assert summary["screening"]["dropped"] == {"careless": screening["careless"]["reason"]}
    for experiment in ("without_original", "with_original"):
        own = [pair for pair in pairs if pair["experiment"] == experiment]
        borderline_share = 100 * sum(pair in pairs[::2] for pair in own) / len(own)
        row = table[experiment, "lapcvae"]
        assert (row["participants"], row["dropped_participants"], row["missing"]) == ("2", "1", "0")
        assert int(row["answers"]) == 2 * len(own)  # the checks are not counted as answers
        assert float(row["preference_mean"]) == pytest.approx((100 + borderline_share) / 2)

    # Reported completion codes: the right one keeps keen, a wrong one or none drops the participant.
    keen_code = completion_code("keen", {row["pair_id"]: row["side"] for row in read_rows(files[0])})
    assert screening["keen"]["completion_code"] == keen_code
    codes = tmp_path / "codes.csv"
    codes.write_text(f"participant,completion_code\nkeen,{keen_code.lower()}\nborderline,0000-0000\n")
    screening = analyze_study(tmp_path, files, "--codes", str(codes))
    assert screening["keen"]["kept"] == "True"
    assert screening["borderline"]["reason"] == (f"reported completion code 0000-0000, but their answers give "
                                                 f"{screening['borderline']['completion_code']}")
    assert screening["careless"]["kept"] == "False"


def test_analysis_refuses_answers_to_pairs_the_participant_was_not_given(tmp_path: Path) -> None:
    write_inputs(tmp_path, test_images=30)
    export(tmp_path, tmp_path / "study", write_params(tmp_path / "p.yaml", pairs=20, per_participant=4))
    key = read_rows(tmp_path / "study" / "key.csv")
    design = json.loads((tmp_path / "study" / "design.json").read_text())
    data = page_data(tmp_path / "study")
    pool = {part["name"]: [pair["id"] for pair in part["pairs"]] for part in data["experiments"]}
    given = participant_trials(pool, {}, 4, design["assignment_seed"], "p1")["without_original"]
    other = next(pair for pair in comparisons(key) if pair["pair_id"] not in given)
    files = [write_responses(tmp_path / "p1.csv", [answer("p1", other, "vae")])]
    with pytest.raises(ValueError, match=rf"participant p1 answered pair {other['pair_id']}, which study.html does "
                       "not give them"):
        analyze_study(tmp_path, files)
    assert not (tmp_path / "table2.csv").exists()


def test_any_response_file_name_a_browser_gives_runs_through_the_dag(tmp_path: Path) -> None:
    """Snakemake's rule analyze_study, run for real: a second download's `responses_p1 (1).csv` and a hostile
    `x;touch PWNED;.csv` (and a results folder whose name holds `;`) are passed as file names, not shell code."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parent.parent
    workdir = tmp_path / "run"
    results = workdir / "res;touch PWNED;"
    workdir.mkdir()
    (workdir / "params.yaml").write_bytes((repo / "params.yaml").read_bytes())
    write_inputs(tmp_path)
    export(tmp_path, results / "human_study", write_params(tmp_path / "p.yaml"))
    key = read_rows(results / "human_study" / "key.csv")
    answers = simulate_answers(key)
    responses = workdir / "study_responses"
    responses.mkdir()
    write_responses(responses / "responses_p1.csv", answers["p1"][:5])
    write_responses(responses / "responses_p1 (1).csv", answers["p1"][5:] + check_answers(key, "p1"))
    write_responses(responses / "x;touch PWNED;.csv", answers["p2"] + check_answers(key, "p2"))
    override = tmp_path / "paths.yaml"
    override.write_text(yaml.safe_dump({"paths": {"results": results.name}}))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(repo), "HOME": str(tmp_path)}
    result = subprocess.run(
        ["snakemake", f"{results.name}/human_study/table2.csv", "-s", str(repo / "Snakefile"), "-d", str(workdir),
         "--cores", "1", "--allowed-rules", "analyze_study", "--configfile", str(override)],
        cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list(workdir.rglob("PWNED")) and not list(tmp_path.glob("PWNED"))
    table = read_rows(results / "human_study" / "table2.csv")
    # Both participants' files were read: each experiment's answers are p1's and p2's.
    for experiment in ("without_original", "with_original"):
        counted = sum(row["experiment"] == experiment for rows in (answers["p1"], answers["p2"]) for row in rows)
        assert {int(row["answers"]) for row in table if row["experiment"] == experiment} == {counted}
