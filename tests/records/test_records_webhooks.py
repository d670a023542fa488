"""Signed webhook deliveries to a real aiohttp receiver on 127.0.0.1, with retries kept in the DB."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from phoneagent.agents.agent import AgentConfigError, parse_agent
from phoneagent.agents.fields import Webhook
from phoneagent.records.builder import CallRecord, Turn
from phoneagent.records.store import RecordStore
from phoneagent.records.webhooks import SIGNATURE_HEADER, WebhookDispatcher, WebhookSettings, sign, verify

SECRET = "s3cret-for-tests-0123456789"


class Receiver:
    """An HTTP receiver answering with the given status codes in turn (then 200)."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.hits: list[tuple[float, dict[str, str], bytes]] = []
        self.got = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.hits.append((time.monotonic(), dict(request.headers), await request.read()))
        code = self.codes.pop(0) if self.codes else 200
        if code == 200:
            self.got.set()
        return web.Response(status=code)


@pytest.fixture
async def receiver(request: pytest.FixtureRequest) -> AsyncIterator[Receiver]:
    rcv = Receiver(getattr(request, "param", []))
    app = web.Application()
    app.router.add_post("/hook", rcv.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rcv.url = f"http://127.0.0.1:{port}/hook"
    yield rcv
    await runner.cleanup()


def ended_record() -> CallRecord:
    rec = CallRecord(call_id="wh1", agent="dental_clinic", direction="inbound", outcome="booked")
    rec.started_unix_ns, rec.ended_unix_ns = time.time_ns() - 10**9, time.time_ns()
    rec.turns.append(Turn(role="caller", turn_id=1, text="I need a cleaning", ts_unix_ns=rec.started_unix_ns))
    rec.positions["PA_CALLS"] = 7
    return rec


async def run_dispatcher(store: RecordStore, url: str, **overrides: Any) -> WebhookDispatcher:
    settings = WebhookSettings(**{"base_delay_s": 0.2, "poll_s": 0.5, "max_attempts": 5, **overrides})
    hooks = [Webhook(url=url, secret=SECRET, events=frozenset({"call.ended"}))]
    disp = WebhookDispatcher(store, hooks, settings)
    await disp.start()
    return disp


async def test_signed_call_ended_delivery_verifies(receiver: Receiver, store: RecordStore) -> None:
    rec = ended_record()
    store.put(rec)
    disp = await run_dispatcher(store, receiver.url)
    try:
        await disp.on_events(rec, ["call.started", "call.ended"])  # only call.ended is subscribed
        await asyncio.wait_for(receiver.got.wait(), 10)
    finally:
        await disp.stop()
    assert len(receiver.hits) == 1
    _, headers, body = receiver.hits[0]
    assert verify(SECRET, headers[SIGNATURE_HEADER], body)
    assert not verify("another-secret-0123456789", headers[SIGNATURE_HEADER], body)
    assert not verify(SECRET, headers[SIGNATURE_HEADER], body + b" ")
    doc = json.loads(body)
    assert doc["event"] == "call.ended"
    assert doc["call"]["call_id"] == "wh1" and doc["call"]["outcome"] == "booked"
    assert "positions" not in doc["call"]
    [d] = store.deliveries("wh1")
    assert (d.status, d.attempts, d.last_code) == ("delivered", 1, 200)


def test_signature_rejects_stale_timestamp() -> None:
    body = b'{"event":"call.ended"}'
    old = int(time.time()) - 3600
    assert not verify(SECRET, sign(SECRET, body, old), body)
    assert verify(SECRET, sign(SECRET, body, old), body, now=old + 1)
    assert not verify(SECRET, "garbage", body)


@pytest.mark.parametrize("receiver", [[500, 500]], indirect=True)
async def test_retries_with_growing_delays_until_delivered(receiver: Receiver, store: RecordStore) -> None:
    rec = ended_record()
    store.put(rec)
    disp = await run_dispatcher(store, receiver.url)
    try:
        await disp.on_events(rec, ["call.ended"])
        await asyncio.wait_for(receiver.got.wait(), 15)
    finally:
        await disp.stop()
    times = [t for t, _, _ in receiver.hits]
    assert len(times) == 3
    first, second = times[1] - times[0], times[2] - times[1]
    assert first >= 0.18 and second >= 0.38 and second > first
    [d] = store.deliveries("wh1")
    assert (d.status, d.attempts, d.last_code) == ("delivered", 3, 200)


@pytest.mark.parametrize("receiver", [[500, 500, 500, 500]], indirect=True)
async def test_gives_up_after_max_attempts_and_keeps_failure(receiver: Receiver, store: RecordStore) -> None:
    rec = ended_record()
    store.put(rec)
    disp = await run_dispatcher(store, receiver.url, max_attempts=2, base_delay_s=0.05)
    try:
        await disp.on_events(rec, ["call.ended"])
        while store.deliveries("wh1")[0].status == "pending":
            disp.changed.clear()
            await asyncio.wait_for(disp.changed.wait(), 10)
    finally:
        await disp.stop()
    [d] = store.deliveries("wh1")
    assert (d.status, d.attempts, d.last_code, d.last_error) == ("failed", 2, 500, "http 500")
    assert len(receiver.hits) == 2


def test_agent_webhooks_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = {"name": "clinic", "business_name": "Clinic", "timezone": "UTC", "persona": "p", "greeting": "g"}
    base |= {"business_hours": {"monday": "9:00-17:00"}, "tools": ["lookup_knowledge"]}
    monkeypatch.setenv("CLINIC_HOOK_SECRET", SECRET)
    agent = parse_agent(
        {
            **base,
            "webhooks": [
                {
                    "url": "https://crm.example.org/hook",
                    "secret_env": "CLINIC_HOOK_SECRET",
                    "events": ["call.ended"],
                },
                {"url": "http://127.0.0.1:9/x", "secret": SECRET},
            ],
        },
        base_dir=tmp_path,
    )
    assert agent.webhooks[0].secret == SECRET and agent.webhooks[0].events == {"call.ended"}
    assert agent.webhooks[1].events == {"call.started", "call.ended", "transfer", "opt_out"}
    bad = [{"url": "ftp://x", "secret_env": "NOT_SET_ANYWHERE_XYZ", "events": ["call.missed"]}]
    with pytest.raises(AgentConfigError) as info:
        parse_agent({**base, "webhooks": bad}, base_dir=tmp_path)
    text = str(info.value)
    assert "webhooks[0].url" in text and "NOT_SET_ANYWHERE_XYZ" in text and "webhooks[0].events[0]" in text
