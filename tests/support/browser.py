"""Headless Chromium (Debian's `chromium` package, installed by `make test`) driven over the
Chrome DevTools Protocol: no browser download, no driver, just a websocket to one page.

    async with Browser.launch(profile_dir) as page:
        await page.goto(url)
        assert await page.wait_until("document.title !== ''")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LOAD_TIMEOUT_S = 30.0

requires_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="chromium is absent: `make test` installs it (apt-get install chromium) as root",
)


class Page:
    """Just enough of the DevTools Protocol to drive one page and see what it logged."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.next_id = 0
        self.events: list[dict] = []

    async def call(self, method: str, **params) -> dict:
        self.next_id += 1
        await self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(await self.socket.recv())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message.get("result", {})
            self.events.append(message)

    async def wait_for(self, method: str) -> dict:
        while True:
            found = next((e for e in self.events if e.get("method") == method), None)
            if found is not None:
                self.events.remove(found)
                return found
            self.events.append(json.loads(await self.socket.recv()))

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await asyncio.wait_for(self.wait_for("Page.loadEventFired"), LOAD_TIMEOUT_S)

    async def submit(self, script: str) -> None:
        """Run `script` (which submits a form) and wait for the next page to load."""
        await self.call("Runtime.evaluate", expression=script)
        await asyncio.wait_for(self.wait_for("Page.loadEventFired"), LOAD_TIMEOUT_S)

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    async def wait_until(self, expression: str, within_s: float = LOAD_TIMEOUT_S):
        """Poll a JavaScript expression until it is truthy; returns its value (or the last falsy
        one after `within_s` seconds, for the assertion to show)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            value = await self.evaluate(expression)
            if value or loop.time() > deadline:
                return value
            await asyncio.sleep(0.2)

    async def screenshot(self, path: Path) -> Path:
        """What the viewport shows, as PNG (whole long pages exceed what Chromium captures)."""
        shot = await self.call("Page.captureScreenshot", format="png")
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))
        return path

    def csp_violations(self) -> list[str]:
        texts = [
            e["params"]["entry"].get("text", "")
            for e in self.events
            if e.get("method") == "Log.entryAdded"
        ]
        return [t for t in texts if "Content Security Policy" in t]


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


class Browser:
    @staticmethod
    @contextlib.asynccontextmanager
    async def launch(profile: Path, width: int = 1280, height: int = 900) -> AsyncIterator[Page]:
        from websockets.asyncio.client import connect

        process = await asyncio.create_subprocess_exec(
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--window-size={width},{height}",
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            port_file = profile / "DevToolsActivePort"
            for _ in range(150):
                if port_file.exists() and port_file.read_text().strip():
                    break
                await asyncio.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            async with httpx.AsyncClient() as http:
                targets = (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
            page_url = next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"]
            async with connect(page_url, max_size=None) as socket:
                page = Page(socket)
                await page.call("Page.enable")
                await page.call("Log.enable")
                yield page
        finally:
            process.terminate()
            await process.wait()
