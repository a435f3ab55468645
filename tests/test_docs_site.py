"""The documentation site (mkdocs.yml, docs/): built with --strict, and its pages shown in a browser.

`make lint` builds the site as well; here it is built into a temporary folder, served over
loopback HTTP and opened in headless Chromium (tests/helpers/browser.py, shared with the report
test): the getting-started page, the configuration reference (which includes config/README.md),
a results page with figures and an API page rendered from the docstrings show their title and
text, every image they hold is loaded, and no JavaScript error occurs. The README's relative links
point to files of the checkout (the README is the site's summary, read on GitHub and PyPI).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from helpers.browser import Chromium
from helpers.project import ROOT

# mkdocs-material prints a banner about MkDocs 2.0 on every build unless this is set.
ENV = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
# (path under the site, <title>, the page's heading, texts the reader sees)
PAGES = [
    (
        "getting-started/install/",
        "Install - CoMIR",
        "Install",
        ["make demo", "Both need only Python >= 3.11 and PyPI.", "Running Snakemake yourself"],
    ),
    (
        "reference/configuration/",
        "Configuration - CoMIR",
        "Configuration",
        # The first from the page itself, the others from config/README.md, included as it is.
        ["documents every key", "The files here", "Registration parameters", "Every key"],
    ),
    ("results/demo/", "The demo - CoMIR", "The demo", ["Recorded in commit", "median_error_px"]),
    ("reference/api/register/", "comir.register - CoMIR", "comir.register", ["make_method", "CascadeRegistration"]),
]


def test_readme_links_point_to_files_of_the_checkout():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    local = {t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t)}
    assert "docs/index.md" in local and "docs/results/index.md" in local, sorted(local)
    assert not [t for t in sorted(local) if not (ROOT / t).exists()]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built with --strict into a temporary folder (the checkout's site/ is untouched)."""
    out = tmp_path_factory.mktemp("docs") / "site"
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)]
    run = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, f"mkdocs build --strict failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}"
    assert not re.findall(r"^(WARNING|ERROR).*", run.stderr, re.MULTILINE), run.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def server(site):
    """The site over HTTP on loopback (the search index is fetched, which file:// would refuse)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.mark.slow  # builds the whole site: about 15 s on 2 cores
def test_the_site_builds_strictly_with_every_page(site):
    for page, *_ in PAGES:
        assert (site / page / "index.html").is_file(), page
    # Figures stay in docs/ and are copied as they are; the API reference's extension is not a page.
    assert (site / "ecdf.png").is_file() and not list(site.rglob("*.py"))


@pytest.mark.slow  # the site's build, then Chromium per page
@pytest.mark.parametrize("path, title, heading, texts", PAGES, ids=[p[0].strip("/") for p in PAGES])
def test_a_page_renders_in_chromium(browser_executable, server, tmp_path, path, title, heading, texts):
    page = Chromium(browser_executable, tmp_path / "profile", tmp_path / "chromium.log")
    try:
        page.send("Page.navigate", {"url": server + path})
        page.wait_for(
            f"document.readyState === 'complete' && location.pathname === {json.dumps('/' + path)}"
            " && !!document.querySelector('.md-content h1')",
            f"the page {path}",
        )
        assert page.evaluate("document.title") == title
        shown = page.evaluate("document.querySelector('.md-content h1').innerText.trim()")
        assert shown.replace("¶", "").strip() == heading
        text = " ".join(page.evaluate("document.body.innerText").split())
        assert all(t in text for t in texts), [t for t in texts if t not in text]
        # The theme's navigation is there, and every figure of the page was found and decoded.
        assert page.evaluate("document.querySelectorAll('nav.md-nav a.md-nav__link').length") > 20
        broken = page.wait_for(
            """(() => { const images = [...document.querySelectorAll('.md-content img[src]')];
                if (images.some(i => !i.complete)) return null;
                return {broken: images.filter(i => i.naturalWidth === 0).map(i => i.src)}; })()""",
            "the page's images loaded",
        )["broken"]
        assert broken == []
        assert page.errors() == []
    finally:
        page.close()
