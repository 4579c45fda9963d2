"""Headless Chromium driven over the Chrome DevTools Protocol, for tests that look at pages as a person would.

``Browser`` starts Debian's ``chromium`` (``CHROMIUM`` overrides the binary) with ``--remote-debugging-pipe``: the
protocol's JSON messages, each ended by a NUL byte, go to the browser on its fd 3 and come back on its fd 4, so there
is no port to find and no client library to add. One page target is attached; ``evaluate`` runs JavaScript in it,
``wait_for`` polls an expression until it is truthy, ``screenshot`` writes a PNG. The protocol:
https://chromedevtools.github.io/devtools-protocol/ (``Target``, ``Page``, ``Runtime``, ``Network``, ``Input``).

A missing browser is an error, never a skip: ``Browser()`` raises ``BrowserMissing`` with how to install it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


class BrowserMissing(RuntimeError):
    """No Chromium binary on this machine."""


class BrowserError(RuntimeError):
    """The browser answered a command with an error, died, or did not answer in time."""


def chromium_binary() -> str:
    """The Chromium to drive: ``$CHROMIUM``, else ``chromium`` on ``PATH``. Raises ``BrowserMissing``."""
    binary = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        raise BrowserMissing("No chromium on PATH: install Debian's package (`apt-get install -y chromium`; .ci/run "
                             "does it when it runs as root) or set CHROMIUM to a Chromium binary.")
    return binary


def _high_fd(fd: int) -> int:
    """``fd`` duplicated to a number above 9 (so placing the pipes on fds 3 and 4 in the child cannot clobber one)."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class Browser:
    """One headless Chromium with one page. Use as a context manager; ``close()`` ends the browser.

    Args:
        width, height: the window's size in CSS pixels.
        timeout: seconds to wait for any one command's answer.
    """

    def __init__(self, *, width: int = 1400, height: int = 1000, timeout: float = 20.0) -> None:
        binary = chromium_binary()
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="sx-chromium-")
        to_browser_r, to_browser_w = (_high_fd(fd) for fd in os.pipe())
        from_browser_r, from_browser_w = (_high_fd(fd) for fd in os.pipe())

        def place_pipes() -> None:  # in the child, before exec: the protocol's fds 3 (commands) and 4 (answers)
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self._process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-pipe", f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions", "about:blank"],
            pass_fds=(3, 4), preexec_fn=place_pipes, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._out = os.fdopen(to_browser_w, "wb", buffering=0)
        self._in = os.fdopen(from_browser_r, "rb", buffering=0)
        self._next_id = 0
        self._answers: dict[int, dict] = {}
        self._events: list[dict] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="chromium-cdp", daemon=True)
        self._reader.start()
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        self._session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    # --- The protocol. ---

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = self._in.read(65536)
            if not chunk:
                with self._cond:
                    self._cond.notify_all()
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._cond:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self._events.append(message)
                self._cond.notify_all()

    def _call(self, method: str, params: dict | None = None, *, session: str | None = None) -> dict:
        with self._cond:
            self._next_id += 1
            call_id = self._next_id
        message = {"id": call_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._out.write(json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while call_id not in self._answers:
                if self._process.poll() is not None:
                    raise BrowserError(f"Chromium exited ({self._process.returncode}) during {method}.")
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise BrowserError(f"No answer to {method} within {self.timeout} s.")
            answer = self._answers.pop(call_id)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    def send(self, method: str, params: dict | None = None) -> dict:
        """Send a protocol command to the page; returns its result. Raises ``BrowserError``."""
        return self._call(method, params, session=self._session)

    # --- What a test does. ---

    def set_cookie(self, *, name: str, value: str, url: str) -> None:
        """Set a cookie for ``url`` (a session cookie logs the browser in)."""
        self.send("Network.setCookie", {"name": name, "value": value, "url": url})

    def goto(self, url: str, *, wait_for: str = "document.readyState === 'complete'") -> None:
        """Load ``url`` and wait until ``wait_for`` (JavaScript) is truthy."""
        self.send("Page.navigate", {"url": url})
        time.sleep(0.05)
        self.wait_for(wait_for)

    def evaluate(self, expression: str) -> Any:
        """The value of the JavaScript ``expression`` in the page (awaited when it is a promise). Raises
        ``BrowserError`` when it throws."""
        result = self.send("Runtime.evaluate",
                           {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float | None = None, interval: float = 0.02) -> Any:
        """Poll ``expression`` until it is truthy; returns its value. Raises ``BrowserError`` after ``timeout``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"Still false after {timeout or self.timeout} s: {expression}")
            time.sleep(interval)

    def type_text(self, text: str) -> None:
        """Type ``text`` into the focused element, as keystrokes."""
        for char in text:
            self.send("Input.dispatchKeyEvent", {"type": "keyDown", "text": char})
            self.send("Input.dispatchKeyEvent", {"type": "keyUp"})

    def screenshot(self, path: str | Path, *, full_page: bool = True) -> Path:
        """Write a PNG of the page (the whole page with ``full_page``) to ``path``; returns the path."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")["cssContentSize"]
            params.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": metrics["width"],
                                                            "height": metrics["height"], "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        """End the browser and remove its profile."""
        with contextlib.suppress(BrowserError, OSError, ValueError):
            self._call("Browser.close")
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for stream in (self._out, self._in):
            with contextlib.suppress(OSError):
                stream.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
