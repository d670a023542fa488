"""The operator console in a real browser (headless Chromium over the DevTools protocol), served
by a real records service whose worker folded a sample call from a real nats-server: without the
token only the login form shows and the data endpoints refuse the page; after logging in the
call is in the list, its transcript (with the barge-in) and latency waterfall render, its
recording plays with the stored duration and the transcript follows the player; a live call is
marked live and its page updates as the call goes on. Each test writes a screenshot; with
``PA_CONSOLE_SCREENSHOTS=<dir>`` they are copied there too (docs/console.png comes from the call
view)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from phoneagent.records.console import vendor
from phoneagent.records.service import RecordsService
from phoneagent.runtime import subjects
from phoneagent.v1 import call_pb2, speech_pb2
from support.chromium import Cdp, chromium
from support.console import RECORDING_S, SAMPLE, TOKEN, console_service, publish_sample, record_where
from support.records_sample_call import MS, meta, publish_start

pytestmark = pytest.mark.slow
LIVE = "cconsolelive2"
READY = "window.__console && window.__console.ready"


@pytest.fixture
async def served(fresh_nats: str, tmp_path: Path) -> AsyncIterator[tuple[str, RecordsService]]:
    assert vendor.available(), "the chart library is vendored by scripts/install.sh"
    async with console_service(fresh_nats, tmp_path) as svc:
        await publish_sample(svc.bus, tmp_path)
        await record_where(svc, SAMPLE, lambda r: r.ended and bool(r.recording))
        yield svc.console_url.rstrip("/"), svc


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Cdp]:
    async with chromium(tmp_path / "profile") as cdp:
        yield cdp


async def shot(cdp: Cdp, tmp_path: Path, name: str) -> Path:
    path = await cdp.screenshot(tmp_path / name)
    assert path.stat().st_size > 10_000, "an empty page"
    if out := os.environ.get("PA_CONSOLE_SCREENSHOTS"):
        Path(out).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(out) / name)
    return path


async def log_in(cdp: Cdp, url: str) -> None:
    await cdp.open(url + "/calls", READY)
    assert await cdp.js("location.pathname") == "/login"
    await cdp.js(f"document.getElementById('token').value = {json.dumps(TOKEN)}; true")
    await cdp.js("document.getElementById('login-button').click(); true")
    await cdp.until("location.pathname === '/calls' && " + READY)


async def test_without_the_token_the_page_and_its_data_are_refused(
    served: tuple[str, RecordsService], browser: Cdp, tmp_path: Path
) -> None:
    url, _ = served
    await browser.open(url + f"/calls/{SAMPLE}", READY)
    assert await browser.js("location.pathname") == "/login"
    assert SAMPLE not in await browser.js("document.body.innerText")
    statuses = await browser.js(
        "Promise.all(['/api/calls', '/api/calls/" + SAMPLE + "', '/calls/" + SAMPLE + "/recording',"
        " '/compliance.csv'].map(p => fetch(p).then(r => r.status)))"
    )
    assert statuses == [401, 401, 401, 401]
    # A wrong token is refused too; the right one gets in.
    await browser.js("document.getElementById('token').value = 'wrong'; true")
    await browser.js("document.getElementById('login-button').click(); true")
    await browser.until("!!document.getElementById('login-error')")
    await shot(browser, tmp_path, "console-login.png")
    assert await browser.js("fetch('/api/calls').then(r => r.status)") == 401
    assert await browser.js("document.cookie") == ""  # the session cookie is HttpOnly


async def test_the_call_its_transcript_waterfall_and_recording(
    served: tuple[str, RecordsService], browser: Cdp, tmp_path: Path
) -> None:
    url, _ = served
    await log_in(browser, url)
    row = await browser.until(f"document.querySelector('tr[data-call-id={json.dumps(SAMPLE)}]')?.innerText")
    assert "booked" in row and "inbound" in row and "…67" in row
    await shot(browser, tmp_path, "console-calls.png")

    await browser.js(f"document.querySelector('tr[data-call-id={json.dumps(SAMPLE)}] a').click(); true")
    await browser.until(f"location.pathname === '/calls/{SAMPLE}' && {READY} && window.__console.chart")
    chat = await browser.js("Array.from(document.querySelectorAll('#chat .msg')).map(m => m.className)")
    assert chat == ["msg agent", "msg caller", "msg agent interrupted"]
    assert await browser.js("document.querySelector('.msg.interrupted .heard').innerText") == "Sure. Tuesday"
    assert (
        await browser.js("document.querySelector('.msg.interrupted del.cut').innerText.trim()")
        == "at nine is booked."
    )
    # The waterfall: six hops of the one timed turn drawn, mouth-to-ear in the table.
    assert await browser.js("window.__console.chartBars") == 6
    assert (
        await browser.js("document.querySelector('#hops tr[data-hop=mouth_to_ear] .p50').innerText") == "900"
    )
    # The recording: the stored duration, and the transcript follows the player.
    duration = await browser.until("window.__console.duration")
    assert abs(duration - RECORDING_S) < 0.05
    await browser.js(
        "const p = document.getElementById('player'); p.currentTime = 2.8; p.play().then(() => true)"
    )
    await browser.until("window.__console.playing === 2 && window.__console.position > 2.9", timeout=15)
    assert await browser.js("document.querySelector('.msg.playing').dataset.index") == "2"
    await browser.js("document.getElementById('player').pause(); true")
    await shot(browser, tmp_path, "console.png")

    await browser.open(url + "/compliance?rule=internal_dnc&since=1d", READY)
    rows = await browser.js("Array.from(document.querySelectorAll('#audit tbody tr')).map(r => r.innerText)")
    assert len(rows) == 1 and "deny" in rows[0] and "do-not-call" in rows[0]
    await shot(browser, tmp_path, "console-compliance.png")


async def test_a_live_call_shows_live_and_updates(
    served: tuple[str, RecordsService], browser: Cdp, tmp_path: Path
) -> None:
    url, svc = served
    await log_in(browser, url)
    t0 = time.time_ns()
    await publish_start(svc.bus, LIVE, t0)
    live_row = f"!!document.querySelector('tr.live[data-call-id={json.dumps(LIVE)}] .live-badge')"
    await browser.until(live_row)  # the list refreshed itself
    await browser.open(url + f"/calls/{LIVE}", READY)
    assert await browser.js("document.getElementById('call-head').dataset.live") == "1"
    await svc.bus.publish(
        subjects.record(LIVE, "transcript"),
        speech_pb2.Transcript(meta=meta(LIVE, 1), final=True, text="Is the clinic open on Saturday?"),
    )
    await browser.until("document.getElementById('chat').innerText.includes('open on Saturday')")
    assert await browser.js("window.__console.refreshes") > 0  # no reload: the page refreshed its part
    await shot(browser, tmp_path, "console-live.png")
    await svc.bus.publish(
        subjects.lifecycle(LIVE),
        call_pb2.CallEvent(
            ended=call_pb2.CallEnded(
                meta=meta(LIVE, ts=t0 + 5000 * MS), reason=call_pb2.END_REASON_CALLER_HANGUP, duration_ms=5000
            )
        ),
    )
    await browser.until("document.getElementById('call-head').dataset.live === '0'")
    assert not await browser.js("!!document.querySelector('.live-badge')")
