"""Headless Chromium driven over the DevTools protocol (a WebSocket; no extra packages), for
tests of the pages the services serve."""

from __future__ import annotations

import asyncio
import base64
import itertools
import re
import shutil
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


class Cdp:
    """The few DevTools protocol calls the tests need."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self.ids)
        await self.ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 30)
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    async def js(self, expression: str) -> Any:
        res = await self.call(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True, userGesture=True
        )
        if "exceptionDetails" in res:
            raise AssertionError(f"page error: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def until(self, expression: str, timeout: float = 15.0) -> Any:
        """The value of ``expression`` once it is truthy (evaluated until ``timeout``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                value = await self.js(expression)
            except AssertionError:
                value = None  # the page is navigating; ask again
            if value:
                return value
            if loop.time() > deadline:
                raise AssertionError(f"page never made {expression!r} true")
            await asyncio.sleep(0.1)

    async def open(self, url: str, ready: str = "document.readyState === 'complete'") -> None:
        """Go to ``url`` (redirects followed) and wait until the new document makes ``ready`` true."""
        await self.js("window.__leaving = true")  # gone once the next document is there
        await self.call("Page.navigate", url=url)
        await self.until(f"!window.__leaving && ({ready})")

    async def screenshot(self, path: Path) -> Path:
        shot = await self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


@asynccontextmanager
async def chromium(
    profile: Path,
    url: str = "about:blank",
    *,
    size: str = "1400,1000",
    args: Sequence[str] = ("--mute-audio",),
) -> AsyncIterator[Cdp]:
    """A headless Chromium showing ``url``, its own profile in ``profile``, with ``args`` added
    to its command line (default: muted); stopped on exit."""
    proc = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--remote-debugging-port=0",
        "--autoplay-policy=no-user-gesture-required",
        *args,
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={size}",
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    drain: asyncio.Task[bytes] | None = None
    try:
        assert proc.stderr is not None
        port = ""
        while not port:
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode(errors="replace")
            assert line, "chromium exited before it opened the DevTools port"
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = m.group(1) if m else ""
        drain = asyncio.create_task(proc.stderr.read())  # keep its pipe from filling
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/json/list") as r:
                pages = [t for t in await r.json() if t["type"] == "page"]
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                cdp = Cdp(ws)
                await cdp.call("Page.enable")
                yield cdp
    finally:
        if drain is not None:
            drain.cancel()
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
