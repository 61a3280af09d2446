"""A small headless Chromium driver over the DevTools protocol (for the browser test and screenshots).

Uses Debian's ``/usr/bin/chromium`` and the ``websockets`` package already pinned in requirements.txt;
nothing is downloaded. Flags from the machine notes: no sandbox (root), no GPU, no background networking.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]


def chromium_path() -> str | None:
    return CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")


class Browser:
    """One headless Chromium with a fresh profile and one page, driven over CDP."""

    def __init__(self, width: int = 1400, height: int = 1000):
        exe = chromium_path()
        if exe is None:
            raise FileNotFoundError("chromium not installed (apt-get install -y chromium)")
        self.profile = Path(tempfile.mkdtemp(prefix="retrainer-chromium-"))
        self.proc = subprocess.Popen(
            [
                exe,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
            page = next(t for t in json.loads(r.read()) if t["type"] == "page")
        from websockets.sync.client import connect

        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)
        self._ids = itertools.count(1)
        self.send("Page.enable")
        self.send("Network.enable")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    def goto(self, url: str, settle: float = 0.5) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")
        time.sleep(settle)

    def eval(self, expression: str) -> Any:
        res = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"JS error in {expression[:80]!r}: {res['exceptionDetails']}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout: float = 30) -> Any:
        """Poll a JS expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeError):
                last = self.eval(expression)
                if last:
                    return last
            time.sleep(0.25)
        raise TimeoutError(f"waited {timeout:.0f}s for {expression!r} (last value {last!r}) at {self.url()}")

    def url(self) -> str:
        return str(self.eval("location.href"))

    def text(self) -> str:
        return str(self.eval("document.body ? document.body.innerText : ''"))

    def frame_text(self) -> str:
        """Visible text of the page and of same-origin iframes (plugin views are framed in the UI)."""
        return str(
            self.eval(
                "[document.body.innerText, ...Array.from(document.querySelectorAll('iframe'))"
                ".map(f => { try { return f.contentDocument.body.innerText } catch (e) { return '' } })].join('\\n')"
            )
        )

    def type_into(self, selector: str, value: str) -> None:
        """Set an input's value the way React notices (native setter + input event)."""
        js = (
            f"(() => {{ const el = document.querySelector({json.dumps(selector)}); if (!el) return false;"
            "const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;"
            f"set.call(el, {json.dumps(value)}); el.dispatchEvent(new Event('input', {{bubbles: true}}));"
            "el.dispatchEvent(new Event('change', {bubbles: true})); return true; })()"
        )
        if not self.eval(js):
            raise RuntimeError(f"no element {selector!r} at {self.url()}")

    def screenshot(self, path: Path | str, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": size["width"],
                "height": min(size["height"], 6000),
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        data = self.send("Page.captureScreenshot", **params)["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.ws.close()
        with contextlib.suppress(ProcessLookupError):  # its own process group: renderers go too
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
