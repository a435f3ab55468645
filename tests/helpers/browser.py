"""Headless Chromium, driven through the DevTools protocol over a pipe: the browser tests' page.

``--remote-debugging-pipe``: JSON messages separated by NUL bytes on file descriptors 3 and 4,
so no websocket or browser-automation package is needed. :func:`ensure_browser` finds Debian's
``chromium`` (or installs it with apt-get when run as root on Debian); the ``browser_executable``
fixture of tests/conftest.py skips with the reason where it cannot (COMIR_REQUIRE_BROWSER=1 turns
that into a failure), and tests using it are marked ``browser``.
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
