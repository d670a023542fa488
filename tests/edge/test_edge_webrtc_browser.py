"""A real browser call: headless Chromium (fake microphone playing a Piper-spoken question)
opens the page served by a real ``phone-agent serve edge`` process, calls the agent through
the local stack (policy, asr, llm, tts, edge as processes), hears it, sees its own words
transcribed, gets a real answer, hangs up.

Chromium is driven over the DevTools protocol (a WebSocket; no extra packages).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.stack import Stack, readyz
from phoneagent.v1 import call_pb2
from support.chromium import Cdp, chromium
from support.common import cpu_stack_env, wait_for, word_errors
from support.voice import piper_speech

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "browser-test-token"
QUESTION = "What are your opening hours on Monday?"
LEAD_S = 14  # silence before the question: the greeting (about 7 s of speech) has ended by then
# What the agent says when a tool call or its turn failed (llm/domain/tools.py, llm/dialog.py).
FAILURE = re.compile(r"\b(sorry|could not do that|went wrong|is required|say that again)\b", re.IGNORECASE)


def question_wav(path: Path) -> Path:
    """LEAD_S of silence, the question, 30 s of silence; 48 kHz mono s16."""
    pcm = piper_speech(QUESTION, 48000)
    pcm = np.concatenate((np.zeros(LEAD_S * 48000, np.int16), pcm, np.zeros(30 * 48000, np.int16)))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48000)
        w.writeframes(pcm.astype("<i2").tobytes())
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data = tmp_path_factory.mktemp("webrtc-stack")
    env = cpu_stack_env(data, PA_SIP_PORT="0", PA_WEB_PORT="0", PA_WEB_HOST="127.0.0.1", PA_WEB_TOKEN=TOKEN)
    st = Stack(data, ("policy", "asr", "llm", "tts", "edge"), env=env)
    try:
        st.start(ready_timeout=240)
        yield st
    finally:
        st.stop()


def page_url(stack: Stack) -> str:
    """The browser page of the stack's edge process, from its /readyz."""
    edge = next(c for c in stack.children if c.name == "edge")
    url = str(readyz(edge.port).get("web", ""))
    assert url.startswith("http://127.0.0.1:"), url
    return url


@pytest.fixture
async def browser_page(tmp_path: Path, stack: Stack) -> AsyncIterator[tuple[Cdp, Bus]]:
    assert stack.nats is not None
    bus = Bus("webrtc-browser-test")
    await bus.connect(stack.nats.url)
    wav = question_wav(tmp_path / "question.wav")
    media = (
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    )
    try:
        async with chromium(tmp_path / "profile", page_url(stack), size="900,900", args=media) as cdp:
            yield cdp, bus
    finally:
        await bus.close()


async def page_stats(cdp: Cdp) -> dict[str, Any]:
    return dict(await cdp.js("JSON.parse(JSON.stringify(window.__stats || {}))") or {})


async def poll(cdp: Cdp, check: Any, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        stats = await page_stats(cdp)
        if check(stats):
            return stats
        if loop.time() > deadline:
            raise AssertionError(f"page never got there: {json.dumps(stats)[:800]}")
        await asyncio.sleep(0.25)


@pytest.mark.timeout(600)
async def test_browser_calls_the_agent(browser_page: tuple[Cdp, Bus], tmp_path: Path) -> None:
    cdp, bus = browser_page
    started: list[call_pb2.CallStarted] = []
    ended: list[call_pb2.CallEnded] = []

    async def on_life(ev: call_pb2.CallEvent, _: Delivery) -> None:
        if ev.WhichOneof("event") == "started" and ev.started.transport == call_pb2.TRANSPORT_WEBRTC:
            started.append(ev.started)
        elif ev.WhichOneof("event") == "ended":
            ended.append(ev.ended)

    await bus.subscribe(subjects.ALL_LIFECYCLE, call_pb2.CallEvent, on_life)
    await poll(cdp, lambda s: s.get("ready"), 20)
    assert await cdp.js("!document.getElementById('token-box').hidden")  # the page asks for the token
    await cdp.js(f"document.getElementById('token').value = {json.dumps(TOKEN)}; true")
    await cdp.js("document.getElementById('call').click(); true")
    await poll(cdp, lambda s: s.get("connection") == "connected", 20)
    await wait_for(lambda: started, timeout=10)  # the edge process put the call on the bus

    # The greeting reaches the browser as audible audio.
    await poll(cdp, lambda s: s.get("maxLevel", 0) > 0.02 and s.get("audibleMs", 0) > 500, 40)
    # The fake microphone's question is transcribed and shown, close to what it said.
    stats = await poll(cdp, lambda s: s.get("callerFinals"), 90)
    heard = " ".join(stats["callerFinals"])
    errors, n = word_errors(QUESTION, heard)
    wer = errors / max(1, n)
    assert wer <= 0.2, f"the page showed {heard!r} for {QUESTION!r} (word error rate {wer:.2f})"
    # The agent answers the question (Monday opens at 9), with a measured turn latency.
    stats = await poll(
        cdp,
        lambda s: s.get("latencies") and any(re.search(r"\b(9|nine)\b", t) for t in s.get("agentTexts", [])),
        120,
    )
    shot = await cdp.call("Page.captureScreenshot", format="png")
    png = tmp_path / "webrtc-call.png"
    png.write_bytes(base64.b64decode(shot["data"]))
    (ROOT / "artifacts").mkdir(exist_ok=True)
    shutil.copyfile(png, ROOT / "artifacts" / "webrtc-call.png")
    print(
        f"\nturn latency (end of speech -> first agent audio): {stats['latencies']} ms; "
        f"caller: {stats['callerFinals']!r}; agent: {stats['agentTexts']!r}"
    )
    failures = [t for t in stats["agentTexts"] if FAILURE.search(t)]
    assert not failures, f"the agent reported a failure: {failures!r}"

    await cdp.js("document.getElementById('hangup').click(); true")
    await wait_for(lambda: ended, timeout=10)
    assert ended[0].meta.call_id == started[0].meta.call_id
    assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
    await poll(cdp, lambda s: s.get("connection") == "closed", 10)
    assert os.path.getsize(png) > 10_000
