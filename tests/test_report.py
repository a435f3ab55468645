"""The HTML report (`snakemake --report`) opened in a real browser.

The report of the tiny run (tests/conftest.py) is a self-contained JavaScript app with the
figures and tables embedded as data URIs. Headless Chromium (Debian's `chromium`, installed
with apt-get when the tests run as root on Debian) opens it, and the test clicks through it
like a reader, with real mouse events: the start page, every result category, the eye button
of each figure and the caption of a result. It checks that no JavaScript error occurs, that
the pages show the workflow's description, categories and captions, and that every figure
the browser displays and every table it offers for download is byte for byte the file the run
wrote. A screenshot of one results page is kept: in $COMIR_TEST_ARTEFACTS if set, else in
pytest's temporary folder.

Chromium is driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`:
JSON messages separated by NUL bytes on file descriptors 3 and 4), so no websocket or
browser-automation package is needed. Where Chromium is missing and cannot be installed, the
tests skip with the reason; COMIR_REQUIRE_BROWSER=1 (set by .ci/run) turns that into a failure.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import TINY_CONFIG, run_snakemake

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CAPTIONS = ROOT / "workflow" / "report"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1400, 1000)
# The closed network here refuses Chromium's own connections; these flags stop it trying.
FLAGS = [
    "--headless",
    "--no-sandbox",  # needed as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--force-color-profile=srgb",  # screenshots show the figures' pixels unchanged
    "--hide-scrollbars",
]
# The categories the rules file their report outputs under (workflow/rules/*.smk); the tiny
# configuration has two variants, so "Variants" is there too.
CATEGORIES = {"CoMIRs", "Results", "Test set", "Training", "Variants"}
EVALUATION = Path("results/tiny/mse/evaluation/main")


class BrowserUnavailable(Exception):
    """No Chromium here and none can be installed; the message says why."""


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def ensure_browser() -> str:
    """Chromium on the PATH, installed from Debian with apt-get (as root) if missing."""
    if found := find_browser():
        return found
    if os.geteuid() != 0:
        raise BrowserUnavailable(f"no {' / '.join(BROWSERS)} on the PATH, and installing one needs root")
    if not Path("/etc/debian_version").exists() or shutil.which("apt-get") is None:
        raise BrowserUnavailable("no chromium on the PATH, and this is not Debian with apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    apt = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=300"]
    install = [*apt, "install", "-y", "--no-install-recommends", "chromium"]
    result = subprocess.run(install, capture_output=True, text=True, timeout=1200, env=env)
    if result.returncode != 0:  # stale or missing package lists on a fresh machine
        update = subprocess.run([*apt, "update"], capture_output=True, text=True, timeout=600, env=env)
        result = subprocess.run(install, capture_output=True, text=True, timeout=1200, env=env)
        if result.returncode != 0:
            raise BrowserUnavailable(
                f"`{' '.join(install)}` failed (exit {result.returncode}; apt-get update exit "
                f"{update.returncode}): {(update.stderr + result.stderr).strip()[-800:]}"
            )
    if found := find_browser():
        return found
    raise BrowserUnavailable("installed the Debian package chromium, but there is still no chromium on the PATH")


class Chromium:
    """Headless Chromium and one page, driven by the DevTools protocol over a pipe."""

    def __init__(self, executable: str, profile: Path, log: Path, window: tuple[int, int] = WINDOW):
        def high(fd: int) -> int:  # clear of 3 and 4, which the child's shell redirects onto
            new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
            os.close(fd)
            return new

        to_browser, self._to_browser = map(high, os.pipe())
        self._from_browser, from_browser = map(high, os.pipe())
        args = [
            executable,
            *FLAGS,
            f"--window-size={window[0]},{window[1]}",
            f"--user-data-dir={profile}",
            "--remote-debugging-pipe",
            "about:blank",
        ]
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                [
                    "bash",
                    "-c",
                    f'exec "$@" 3<&{to_browser} 4>&{from_browser} {to_browser}<&- {from_browser}>&-',
                    "bash",
                    *args,
                ],
                pass_fds=(to_browser, from_browser),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._id, self._session = b"", 0, None
        self.events: list[dict] = []
        try:
            target = self.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
            attached = self.send("Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True)
            self._session = attached["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                self.send(f"{domain}.enable")
            self.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": window[0], "height": window[1], "deviceScaleFactor": 1, "mobile": False},
            )
        except BaseException:
            self.close()
            raise

    # --- the protocol -------------------------------------------------------------------------

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Chromium did not answer; its log:\n{self.log.read_text()[-3000:]}")
            if select.select([self._from_browser], [], [], left)[0]:
                chunk = os.read(self._from_browser, 1 << 20)
                if not chunk:
                    raise EOFError(f"Chromium closed the pipe; its log:\n{self.log.read_text()[-3000:]}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, params: dict | None = None, timeout: float = 60, browser: bool = False) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self._session and not browser:
            message["sessionId"] = self._session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]
        deadline = time.monotonic() + timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10, browser=True)
        except (OSError, RuntimeError, TimeoutError, EOFError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)

    # --- the page -----------------------------------------------------------------------------

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:200]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str, timeout: float = 30):
        """The value of a JavaScript expression once it is truthy (the app renders asynchronously)."""
        deadline = time.monotonic() + timeout
        while not (value := self.evaluate(expression)):
            if time.monotonic() > deadline:
                text = self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(f"{what}: not there after {timeout} s; the page shows:\n{text[:3000]}")
            time.sleep(0.1)
        return value

    def open(self, url: str) -> None:
        self.evaluate("window.__replaced = true")  # gone once the new document is there
        self.send("Page.navigate", {"url": url})
        self.wait_for(
            "!window.__replaced && document.readyState === 'complete' && !!document.querySelector('#app nav a')",
            "the app's menu",
        )

    def click(self, element: str, what: str) -> None:
        """A left click with the mouse in the middle of an element (a JavaScript expression).

        The report's styles are generated in the page (Tailwind) after each rendering, so the
        layout can still move: the click waits until the element has stood still for 200 ms
        and is the topmost element at that point.
        """
        point = self.wait_for(
            f"""(async () => {{ const el = {element}; if (!el) return null;
                el.scrollIntoView({{block: 'center', inline: 'nearest'}});
                const box = () => JSON.stringify(el.getBoundingClientRect());
                const before = box();
                await new Promise(resolve => setTimeout(resolve, 200));
                const r = el.getBoundingClientRect();
                if (box() !== before || r.width === 0 || r.height === 0) return null;
                const x = r.left + r.width / 2, y = r.top + r.height / 2, hit = document.elementFromPoint(x, y);
                return hit && el.contains(hit) ? {{x, y}} : null; }})()""",
            what,
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {**point, "type": kind, "button": "left", "clickCount": 1})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])

    def errors(self) -> list[str]:
        """Uncaught exceptions, console.error calls and error entries of the browser's log so far."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description") or details.get("text"))
            elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(" ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"{params['entry']['source']}: {params['entry']['text']} {params['entry'].get('url', '')}")
        return found


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


@pytest.fixture(scope="session")  # session: resolved before the tiny run, so a skip costs nothing
def browser_executable() -> str:
    try:
        return ensure_browser()
    except BrowserUnavailable as error:
        if os.environ.get("COMIR_REQUIRE_BROWSER") == "1":
            pytest.fail(f"COMIR_REQUIRE_BROWSER=1 but no browser for the report test: {error}")
        pytest.skip(f"no browser for the report test: {error}")


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
