"""The HTML report (`snakemake --report`) opened in a real browser.

The report of the tiny run (the `tiny_run` fixture, tests/conftest.py) is a self-contained JavaScript app with the
figures and tables embedded as data URIs. Headless Chromium (Debian's `chromium`, installed
with apt-get when the tests run as root on Debian) opens it, and the test clicks through it
like a reader, with real mouse events: the start page, every result category, the eye button
of each figure and the caption of a result. It checks that no JavaScript error occurs, that
the pages show the workflow's description, categories and captions, and that every figure
the browser displays and every table it offers for download is byte for byte the file the run
wrote. A screenshot of one results page is kept: in $COMIR_TEST_ARTEFACTS if set, else in
pytest's temporary folder.

Chromium is driven through the DevTools protocol over a pipe (tests/helpers/browser.py), so
no websocket or browser-automation package is needed. Where Chromium is missing and cannot be
installed, the tests skip with the reason (the `browser_executable` fixture, tests/conftest.py);
COMIR_REQUIRE_BROWSER=1 (set by .ci/run) turns that into a failure.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from helpers.browser import WINDOW, Chromium
from helpers.snakemake import TINY_CONFIG, run_snakemake

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ROOT / "workflow" / "report"
# The categories the rules file their report outputs under (workflow/rules/*.smk); the tiny
# configuration has two variants, so "Variants" is there too.
CATEGORIES = {"CoMIRs", "Results", "Test set", "Training", "Variants"}
EVALUATION = Path("results/tiny/mse/evaluation/main")


# JavaScript locators: by the text a reader sees, not by the app's markup.
def link(text: str) -> str:
    return f"[...document.querySelectorAll('#app a')].find(a => a.textContent.trim() === {json.dumps(text)})"


def row_links(label: str) -> str:
    """The links (view, information) of the results table's row with a cell reading `label`."""
    return (
        f"(() => {{ const row = [...document.querySelectorAll('#app tr')].find(tr => [...tr.cells].some("
        f"td => td.textContent.trim() === {json.dumps(label)}));"
        " return row ? [...row.querySelectorAll('a')] : []; })()"
    )


def data_uri_bytes(uri: str) -> bytes:
    header, _, payload = uri.partition(",")
    assert header.startswith("data:") and header.endswith(";base64"), header[:100]
    return base64.b64decode(payload)


def normalised(text: str) -> str:
    return " ".join(text.split())


def shown_figure(page: Chromium, expected: bytes, what: str) -> dict:
    """Waits until the page shows a decoded <img> whose data URI holds exactly `expected`."""
    page.evaluate(f"window.__expectedFigure = {json.dumps(base64.b64encode(expected).decode())}; true")
    return page.wait_for(
        """(() => { const img = [...document.images].find(i => i.src.endsWith(',' + window.__expectedFigure));
            if (!img || !img.complete || img.naturalWidth === 0) return null;
            const r = img.getBoundingClientRect();
            return {width: img.naturalWidth, height: img.naturalHeight, left: r.left, top: r.top,
                    shownWidth: r.width, shownHeight: r.height}; })()""",
        f"{what}, displayed",
    )


def shows_text(page: Chromium, text: str, what: str) -> None:
    """Waits until the page's visible text (whitespace collapsed) contains `text`."""
    page.wait_for(f"document.body.innerText.replace(/\\s+/g, ' ').includes({json.dumps(text)})", what)


def open_category(page: Chromium, url: str, category: str, subcategory: str | None = None) -> None:
    page.open(url)
    page.click(link(category), f"the menu entry {category!r}")
    if subcategory:
        page.click(link(subcategory), f"the subcategory {subcategory!r}")


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory) -> Path:
    """The report of the tiny run, written outside the run's folder."""
    path = tmp_path_factory.mktemp("report") / "report.html"
    run = run_snakemake("--report", str(path), "--configfile", str(TINY_CONFIG), cwd=tiny_run, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert path.stat().st_size > 100_000
    return path


@pytest.fixture(scope="module")
def browser(browser_executable, report, tmp_path_factory):
    folder = tmp_path_factory.mktemp("chromium")
    chromium = Chromium(browser_executable, folder / "profile", folder / "chromium.log")
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture()
def page(browser) -> Chromium:
    """The browser's page; each test sees only its own JavaScript errors."""
    browser.events.clear()
    return browser


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory) -> Path:
    folder = os.environ.get("COMIR_TEST_ARTEFACTS")
    if not folder:
        return tmp_path_factory.mktemp("artefacts")
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


# --- tests ----------------------------------------------------------------------------------


def test_start_page_shows_the_workflow(page, report):
    page.open(report.as_uri())
    text = normalised(page.evaluate("document.body.innerText"))
    assert normalised((CAPTIONS / "workflow.rst").read_text()) in text
    menu = set(page.evaluate("[...document.querySelectorAll('#app nav a')].map(a => a.textContent.trim())"))
    assert {"Workflow", "Statistics", "About"} | CATEGORIES <= menu, menu
    # The rule graph is drawn by Vega on a canvas: some of its pixels are painted.
    page.wait_for(
        """[...document.querySelectorAll('#app canvas')].some(c => c.width > 0 && c.height > 0 &&
             c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 === 3 && v > 0))""",
        "the rule graph",
    )
    page.click(link("Statistics"), "the menu entry 'Statistics'")
    page.wait_for("document.querySelectorAll('#app canvas, #app svg.marks').length >= 2", "the run-time charts")
    assert page.errors() == []


def test_results_show_the_runs_figures_tables_and_captions(page, report, tiny_run, artefacts):
    open_category(page, report.as_uri(), "Results", "tiny / mse / main")
    for label, file in [
        ("eCDF", "figures/ecdf.png"),
        ("error vs displacement", "figures/error_vs_displacement.png"),
        ("success rates", "figures/success.png"),
    ]:
        page.click(f"{row_links(label)}[0]", f"the view button of {label!r}")
        shown = shown_figure(page, (tiny_run / EVALUATION / file).read_bytes(), label)
        image = cv2.imread(str(tiny_run / EVALUATION / file))
        assert (shown["width"], shown["height"]) == (image.shape[1], image.shape[0])
    # The tables are offered for download as data URIs holding the run's CSV files.
    for label, file in [
        ("success", "tables/success.csv"),
        ("Wilcoxon tests", "tables/wilcoxon.csv"),
        ("time per stage", "tables/timing.csv"),
    ]:
        href = page.wait_for(f"{row_links(label)}[0]?.getAttribute('href')", f"the download link of {label!r}")
        assert data_uri_bytes(href) == (tiny_run / EVALUATION / file).read_bytes(), label

    # The eCDF again, kept as the artefact: the browser painted the run's figure.
    page.click(f"{row_links('eCDF')}[0]", "the view button of 'eCDF'")
    shown = shown_figure(page, (tiny_run / EVALUATION / "figures/ecdf.png").read_bytes(), "eCDF")
    time.sleep(0.5)  # let the compositor paint before the screenshot
    png = page.screenshot()
    (artefacts / "report-results.png").write_bytes(png)
    screen = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    assert len(png) > 20_000 and screen.shape == (WINDOW[1], WINDOW[0], 3)
    assert screen.std() > 20 and len(np.unique(screen.reshape(-1, 3), axis=0)) > 100, "a blank screenshot"
    # Where the page shows the eCDF (scaled to fit), the screenshot holds the figure's pixels.
    left, top = round(shown["left"]), round(shown["top"])
    width, height = round(shown["shownWidth"]), round(shown["shownHeight"])
    assert left >= 0 and top >= 0 and left + width <= WINDOW[0] and top + height <= WINDOW[1], shown
    figure = cv2.imread(str(tiny_run / EVALUATION / "figures/ecdf.png"))
    expected = cv2.resize(figure, (width, height), interpolation=cv2.INTER_AREA).astype(float)
    painted = screen[top : top + height, left : left + width].astype(float)
    correlation = np.corrcoef(painted.mean(axis=2).ravel(), expected.mean(axis=2).ravel())[0, 1]
    difference = np.abs(painted - expected).mean()
    assert correlation > 0.95 and difference < 3, (
        f"the screenshot does not show the eCDF ({correlation=}, {difference=})"
    )

    # Captions: the information button shows the rule's caption, its Jinja template filled in.
    page.click(f"{row_links('eCDF')}[1]", "the information button of 'eCDF'")
    shows_text(page, normalised((CAPTIONS / "ecdf.rst").read_text()), "the eCDF's caption")
    open_category(page, report.as_uri(), "Results", "tiny / mse / main")
    page.click(f"{row_links('success')}[1]", "the information button of 'success'")
    shows_text(page, "Registration successes of tiny (mse, test set main)", "the success table's caption")
    assert page.errors() == []


@pytest.mark.parametrize(
    "category, label, files",
    [
        ("CoMIRs", "examples", [f"results/tiny/{v}/comir/main/examples.png" for v in ("mse", "cosine")]),
        ("Training", "loss", [f"results/tiny/{v}/model/loss.png" for v in ("mse", "cosine")]),
        ("Variants", "errors per variant", ["results/tiny/comparison/main/variants.png"]),
        ("Variants", "Wilcoxon tests between variants", ["results/tiny/comparison/main/variants.csv"]),
        ("Test set", "cases", ["results/tiny/testsets/main/cases.csv"]),
    ],
)
def test_other_categories_show_their_results(page, report, tiny_run, category, label, files):
    """Where a category holds a result of both variants, the variant is a toggle above its table."""
    open_category(page, report.as_uri(), category)
    for variant, file in zip(["mse", "cosine"], files):
        if len(files) > 1:
            toggle = f"[...document.querySelectorAll('#app label')].find(l => l.textContent.trim() === '{variant}')"
            page.click(toggle, f"the toggle {variant!r}")
        if file.endswith(".csv"):  # offered for download, as a data URI
            href = page.wait_for(f"{row_links(label)}[0]?.getAttribute('href')", f"the download link of {label!r}")
            assert data_uri_bytes(href) == (tiny_run / file).read_bytes(), file
        else:
            page.click(f"{row_links(label)}[0]", f"the view button of {label!r}")
            shown_figure(page, (tiny_run / file).read_bytes(), f"{category}: {file}")
    assert page.errors() == []
