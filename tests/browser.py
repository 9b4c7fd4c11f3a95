"""Headless Chromium for the tests, driven over the Chrome DevTools protocol on a pipe (no websocket library).

``--remote-debugging-pipe`` makes Chromium read commands on its file descriptor 3 and write replies and events on
4, each a JSON message ended by a NUL byte. ``Browser.open`` gives a ``Tab``: load a page, evaluate script, click
at a point, take a screenshot, and read back every console error and uncaught exception the page produced.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import apt_packages

CANDIDATES = ("chromium", "chromium-headless-shell", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    """The first Chromium-like browser on PATH (or in Debian's own library folder for the headless shell)."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    shell = Path("/usr/lib/chromium/chromium-headless-shell")
    return str(shell) if shell.is_file() else None


def install_chromium() -> tuple[str | None, str]:
    """Install Debian's ``chromium`` where the tests run as root; (its path or None, why not)."""
    failed = apt_packages.install(["chromium"])
    if failed:
        return None, failed
    return find_chromium(), "installed, yet no chromium on PATH"


def _above_nine(fd: int) -> int:
    """A copy of ``fd`` numbered 10 or more (the original is closed)."""
    import fcntl

    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class DevToolsError(RuntimeError):
    """A DevTools command failed, or Chromium did not answer in time."""


class Browser:
    """One headless Chromium process and its DevTools pipe."""

    def __init__(self, executable: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="bench-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        # Moved above 9 first: were an end already fd 3 or 4, one redirection below would overwrite the other.
        to_browser_r, from_browser_w = (_above_nine(fd) for fd in (to_browser_r, from_browser_w))
        # The pipe ends become Chromium's fds 3 and 4 through bash's redirections (``pass_fds`` keeps them; dash
        # cannot redirect from fds above 9).
        command = ["bash", "-c", f'exec "$@" 3<&{to_browser_r} 4>&{from_browser_w}', "bash", executable,
                   "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                   "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                   "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio",
                   "--allow-file-access-from-files", f"--user-data-dir={self.profile}", "about:blank"]
        self.process = subprocess.Popen(command, pass_fds=(to_browser_r, from_browser_w), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._next_id = 0
        self._lock = threading.Lock()
        self._replies: dict[int, queue.Queue] = {}
        self.events: list[dict[str, Any]] = []
        self._event_added = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.send("Browser.getVersion")  # fails fast when Chromium did not start

    def _drain_stderr(self) -> None:
        for line in self.process.stderr:
            self._stderr.append(line.decode(errors="replace"))

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    self._replies.setdefault(message["id"], queue.Queue()).put(message)
                else:
                    with self._event_added:
                        self.events.append(message)
                        self._event_added.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Run one DevTools command and return its result."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            self._replies.setdefault(ident, queue.Queue())
        message = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        try:
            os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        except BrokenPipeError:
            self.process.wait(timeout=10)
            time.sleep(0.2)  # the rest of its last words
            raise DevToolsError(f"chromium exited ({self.process.returncode}) before {method}: "
                                f"{''.join(self._stderr[-8:])}") from None
        try:
            reply = self._replies[ident].get(timeout=self.timeout)
        except queue.Empty:
            raise DevToolsError(f"no reply to {method} in {self.timeout:.0f} s; chromium said: "
                                f"{''.join(self._stderr[-5:])}") from None
        if "error" in reply:
            raise DevToolsError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, since: int) -> dict[str, Any]:
        """The first event ``method`` of ``session`` at or after index ``since`` of ``events``."""
        deadline = time.monotonic() + self.timeout
        with self._event_added:
            while True:
                for event in self.events[since:]:
                    if event.get("method") == method and event.get("sessionId") == session:
                        return event
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DevToolsError(f"no {method} event in {self.timeout:.0f} s")
                self._event_added.wait(left)

    def open(self, width: int = 1280, height: int = 900) -> "Tab":
        """A new tab of ``width`` × ``height`` CSS pixels, with console, log and page events on."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        return Tab(self, session, target)

    def close(self) -> None:
        try:
            os.close(self._to_browser)  # Chromium exits when its pipe closes
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        finally:
            os.close(self._from_browser)
            shutil.rmtree(self.profile, ignore_errors=True)


class Tab:
    """One page of the browser (a DevTools session)."""

    def __init__(self, browser: Browser, session: str, target: str) -> None:
        self.browser = browser
        self.session = session
        self.target = target
        self._first_event = len(browser.events)

    def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.send(method, params, self.session)

    def load(self, url: str) -> None:
        """Navigate to ``url`` and wait for its load event (images and scripts done)."""
        since = len(self.browser.events)
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise DevToolsError(f"cannot open {url}: {result['errorText']}")
        if "loaderId" not in result:
            raise DevToolsError(f"{url} is the page already open, another fragment (no load); open another first")
        self.browser.wait_event("Page.loadEventFired", self.session, since)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (an exception in it fails the test's call)."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression!r} threw: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of the first element matching ``selector``."""
        box = self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                            "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                            "return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    def screenshot(self, full_page: bool = False) -> bytes:
        """A PNG of the viewport (or of the whole page)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        return base64.b64decode(self.send("Page.captureScreenshot", params)["data"])

    def errors(self) -> list[str]:
        """Every console error, failed load and uncaught exception of this tab so far."""
        found = []
        for event in self.browser.events[self._first_event:]:
            if event.get("sessionId") != self.session:
                continue
            params = event.get("params", {})
            if event["method"] == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
            elif event["method"] == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append("console." + params["type"] + ": " + " ".join(str(a.get("value", a.get("description")))
                                                                           for a in params.get("args", [])))
            elif event["method"] == "Log.entryAdded" and params["entry"].get("level") == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        return found

    def requests(self) -> list[str]:
        """The URL of every request this tab made so far (pages, styles, scripts, images)."""
        return [event["params"]["request"]["url"] for event in self.browser.events[self._first_event:]
                if event.get("sessionId") == self.session and event["method"] == "Network.requestWillBeSent"]

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})
