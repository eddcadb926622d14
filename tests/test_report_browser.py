"""report.html in a real headless Chromium at a laptop's 1,366 px: no sideways scrolling of the page, every table in
its own scroll box, contents that lead to their sections, columns that sort on a click, best values marked."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from conftest import NEEDS_CHROMIUM, headless_chromium
from test_report import RES, run_report, write_fixture

from eval.report_blocks import display

pytestmark = NEEDS_CHROMIUM

LAPTOP = (1366, 768)  # the most common laptop screen; the report must not be wider


@pytest.fixture
def page(tmp_path: Path):
    """The report of a three-seed fixture run, open in headless Chromium at 1,366 x 768."""
    paths = write_fixture(tmp_path, lapcvae_gain=3.0, seeds=(0, 1, 2))
    run_report(paths)
    with headless_chromium(tmp_path / "profile", *LAPTOP) as driver:
        driver.get(paths["html"].as_uri())
        yield driver, paths


def column_of(driver, table, header: str) -> list[dict[str, str | None]]:
    """Each row's model and its cell under `header`: text, data-value and whether it is marked best."""
    return driver.execute_script("""
        const [table, header] = arguments;
        const column = Array.from(table.tHead.rows[0].cells).findIndex((th) => th.textContent.startsWith(header));
        return Array.from(table.tBodies[0].rows, (row) => ({model: row.cells[0].textContent,
            text: row.cells[column].textContent, value: row.cells[column].dataset.value ?? null,
            best: row.cells[column].classList.contains("best")}));""", table, header)


def test_report_reads_on_a_laptop_screen(page, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver, paths = page
    width = driver.execute_script("return [document.documentElement.scrollWidth, "
                                  "document.documentElement.clientWidth, window.innerWidth]")
    assert width[0] <= width[1] <= width[2] == LAPTOP[0], f"the page is wider than the window: {width}"

    boxes = driver.execute_script("""return Array.from(document.querySelectorAll("table"), (table) => {
        const box = table.parentElement;
        return {boxed: box.classList.contains("table-scroll") && getComputedStyle(box).overflowX === "auto",
                right: box.getBoundingClientRect().right, table: table.scrollWidth, box: box.clientWidth};});""")
    assert boxes and all(box["boxed"] for box in boxes), boxes
    assert all(box["right"] <= width[1] for box in boxes), boxes
    assert any(box["table"] > box["box"] for box in boxes), "Table 1 is wider than the page: it scrolls in its box"

    links = driver.find_elements(By.CSS_SELECTOR, "nav#contents a")
    targets = [link.get_attribute("href").split("#", 1)[1] for link in links]
    headings = driver.execute_script("return Array.from(document.querySelectorAll('body > h2[id], body > h3[id]'), "
                                     "(heading) => heading.id)")
    assert targets == headings and len(targets) >= 8, (targets, headings)
    provenance = next(link for link in links if link.text == "Provenance")
    provenance.click()
    top = driver.execute_script("return document.getElementById('provenance').getBoundingClientRect().top")
    assert abs(top) < 2, f"the Provenance link scrolled its heading to {top} px, not to the top"

    table1 = pd.read_csv(paths["results"] / "metrics" / "table1.csv")
    figure = driver.find_element(By.XPATH, f"//figure[figcaption[starts-with(., 'Ours, {RES}x{RES}')]]")
    ours = figure.find_element(By.TAG_NAME, "table")
    driver.execute_script("arguments[0].scrollIntoView()", figure)
    driver.save_screenshot(str(tmp_path / "report_table1_1366.png"))
    rmse = column_of(driver, ours, "RMSE mean ± std")
    best = table1.loc[table1["rmse_mean"].idxmin(), "model"]
    assert [cell["model"] for cell in rmse if cell["best"]] == [display(best)]
    psnr = column_of(driver, ours, "PSNR")
    assert [cell["model"] for cell in psnr if cell["best"]] == [display(table1.loc[table1["psnr_mean"].idxmax(),
                                                                                   "model"])]

    pairs = {cell["model"]: cell["text"] for cell in rmse}
    header = ours.find_element(By.XPATH, ".//th[starts-with(normalize-space(.), 'RMSE mean')]")
    for click, direction in ((1, "ascending"), (2, "descending")):
        header.click()
        assert header.get_attribute("aria-sort") == direction
        after = column_of(driver, ours, "RMSE mean ± std")
        values = [float(cell["value"]) for cell in after]
        assert values == sorted(values, reverse=click == 2), f"{direction}: {values}"
        assert {cell["model"]: cell["text"] for cell in after} == pairs, "whole rows move, not single cells"
    ours.find_element(By.XPATH, ".//th[starts-with(normalize-space(.), 'Model')]").click()
    models = [cell["model"] for cell in column_of(driver, ours, "Model")]
    assert models == sorted(models, key=str.lower)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(tmp_path / "report_top_1366.png"))
