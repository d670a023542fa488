"""Call records end to end: one real call over SIP through the local stack (every service,
real CPU models), with an agent whose webhooks point at two receivers of this test.

Checked: the complete record through the control API, the stereo recording it links to
(caller left, agent right), the post-call summary, a ``call.ended`` webhook whose HMAC is
computed here independently, retries with back-off ending in success for a receiver that
fails twice, and the same record after the records service (its worker) restarts.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import shutil
import threading
import time
import wave
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml
from phoneagent.devtools.harness.demo import demo_env, free_udp_port
from phoneagent.devtools.harness.scenario import load_scenario
from phoneagent.devtools.harness.session import Outcome, run_scenario
from phoneagent.records.builder import OUTCOMES
from phoneagent.records.store import RecordStore
from phoneagent.runtime import subjects
from phoneagent.runtime.redact import mask_number
from phoneagent.runtime.stack import Stack
from phoneagent.v1 import call_pb2, control_api_pb2, control_api_pb2_grpc

pytestmark = pytest.mark.slow
AGENTS = Path(__file__).resolve().parents[2] / "services" / "phoneagent" / "agents"
OK_SECRET = "ok-receiver-secret-5f3a9c"
FLAKY_SECRET = "flaky-receiver-secret-81d2e7"
FLAKY_SECRET_ENV = "PA_TEST_FLAKY_WEBHOOK_SECRET"
FRAME = 160  # 20 ms at 8 kHz


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # monotonic
    answered: int


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1 that answers 500 to its first ``fail_first`` requests."""

    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._cond:
                    code = 500 if len(receiver.requests) < receiver.fail_first else 200
                    receiver.requests.append(Received(dict(self.headers), body, time.monotonic(), code))
                    receiver._cond.notify_all()
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def wait(self, check: Callable[[list[Received]], bool], timeout: float) -> list[Received]:
        with self._cond:
            assert self._cond.wait_for(lambda: check(self.requests), timeout), self.requests
            return list(self.requests)


def agent_file(directory: Path, ok_url: str, flaky_url: str) -> Path:
    """The dental clinic agent with two webhook receivers (knowledge files copied beside it)."""
    shutil.copytree(AGENTS / "knowledge", directory / "knowledge")
    agent = yaml.safe_load((AGENTS / "dental_clinic.yaml").read_text(encoding="utf-8"))
    agent["webhooks"] = [
        {"url": ok_url, "secret": OK_SECRET, "events": ["call.started", "call.ended"]},
        {"url": flaky_url, "secret_env": FLAKY_SECRET_ENV, "events": ["call.ended"]},
    ]
    path = directory / "dental_clinic.yaml"
    path.write_text(yaml.safe_dump(agent, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class Env:
    stack: Stack
    env: dict[str, str]
    ok: Receiver
    flaky: Receiver


@pytest.fixture(scope="module")
def records_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    data = tmp_path_factory.mktemp("records-stack")
    ok, flaky = Receiver(), Receiver(fail_first=2)
    env = demo_env(data, free_udp_port())
    env.update(
        {
            "PA_AGENT_FILE": str(agent_file(data, ok.start(), flaky.start())),
            FLAKY_SECRET_ENV: FLAKY_SECRET,
            "PA_RECORDS_DB": str(data / "records.sqlite3"),
            "PA_RECORDING_DIR": str(data / "recordings"),
        }
    )
    st = Stack(data, env=env)
    saved = {k: os.environ.get(k) for k in ("PA_DATABASE_URL", "PA_POLICY_DB")}
    try:
        st.start(ready_timeout=240)
        os.environ.update({k: env[k] for k in saved})
        yield Env(st, env, ok, flaky)
    finally:
        st.stop()
        ok.stop()
        flaky.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
async def api(records_stack: Env) -> AsyncIterator[Callable[[], Any]]:
    """A CallControl stub for the records replica running now (a new channel after a restart)."""
    channels: list[Any] = []

    def stub() -> Any:
        records = next(r for r in records_stack.stack.status() if r["service"] == "records")
        channels.append(grpc.aio.insecure_channel(f"127.0.0.1:{records['grpc_port']}"))
        return control_api_pb2_grpc.CallControlStub(channels[-1])

    yield stub
    for channel in channels:
        await channel.close()


async def wait_record(
    stub: Any, call_id: str, check: Callable[[control_api_pb2.CallInfo], bool], timeout: float
) -> control_api_pb2.CallInfo:
    deadline = time.monotonic() + timeout
    while True:
        try:
            info = await stub.GetCall(control_api_pb2.GetCallRequest(call_id=call_id))
            if check(info):
                return info
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        assert time.monotonic() < deadline, f"record of {call_id} not complete in time"
        await asyncio.sleep(0.25)


async def the_only_call(stub: Any, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        listed = await stub.ListCalls(control_api_pb2.ListCallsRequest(limit=5, omit_details=True))
        if listed.calls:
            assert len(listed.calls) == 1, [c.call_id for c in listed.calls]
            return str(listed.calls[0].call_id)
        assert time.monotonic() < deadline, "no call record"
        await asyncio.sleep(0.25)


def envelope(pcm: np.ndarray) -> np.ndarray:
    """Log energy per 20 ms frame."""
    n = len(pcm) // FRAME
    frames = pcm[: n * FRAME].astype(np.float64).reshape(n, FRAME)
    return np.log10(np.mean(frames**2, axis=1) + 1.0)


def aligned_correlation(recorded: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Best Pearson correlation of two envelopes over all lags, and that lag (in frames)."""
    a = (recorded - recorded.mean()) / (recorded.std() or 1.0)
    b = (reference - reference.mean()) / (reference.std() or 1.0)
    xc = np.correlate(a, b, mode="full")
    lag = int(np.argmax(xc)) - (len(b) - 1)
    lo, hi = max(0, lag), min(len(a), len(b) + lag)
    seg_a, seg_b = recorded[lo:hi], reference[lo - lag : hi - lag]
    return float(np.corrcoef(seg_a, seg_b)[0, 1]), lag


def check_recording(path: Path, outcome: Outcome) -> None:
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        stereo = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    left, right = envelope(stereo[:, 0]), envelope(stereo[:, 1])
    caller, agent = envelope(outcome.result.caller_pcm), envelope(outcome.result.agent_pcm)
    corr, lag = aligned_correlation(left, caller)
    assert corr > 0.9, f"left channel does not follow the caller's audio (r={corr:.2f})"
    assert corr > aligned_correlation(left, agent)[0] + 0.1, "left channel follows the agent"
    right_corr = aligned_correlation(right, agent)[0]
    assert right_corr > 0.9, f"right channel does not follow the agent's audio (r={right_corr:.2f})"
    assert right_corr > aligned_correlation(right, caller)[0] + 0.1, "right channel follows the caller"
    # Energy in the left channel while the caller speaks, against while the caller is silent.
    speaking = np.zeros(len(left), bool)
    idx = np.nonzero(caller > caller.max() - 2.0)[0] + lag
    speaking[idx[(idx >= 0) & (idx < len(left))]] = True
    assert speaking.sum() > 25, "the caller's utterance is not inside the recording"
    assert left[speaking].mean() > left[~speaking].mean() + 1.5  # > 15 dB louder


def check_signature(received: Received, secret: str) -> dict[str, Any]:
    """The documented scheme: ``t=<unix s>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``."""
    parts = dict(p.split("=", 1) for p in received.headers["X-PhoneAgent-Signature"].split(","))
    expected = hmac.new(secret.encode(), parts["t"].encode() + b"." + received.body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())
    assert abs(time.time() - int(parts["t"])) < 600
    return dict(json.loads(received.body))


def check_record(info: control_api_pb2.CallInfo, caller_number: str) -> None:
    assert info.direction == call_pb2.DIRECTION_INBOUND and info.transport == call_pb2.TRANSPORT_SIP
    assert info.from_number == mask_number(caller_number) and caller_number[1:] not in str(info)
    assert 0 < info.started_unix_ns <= info.answered_unix_ns < info.ended_unix_ns
    assert info.end_reason == call_pb2.END_REASON_CALLER_HANGUP and info.outcome in OUTCOMES
    roles = {t.role for t in info.turns}
    assert roles == {"caller", "agent"}, [(t.role, t.text) for t in info.turns]
    latencies = [t.latency_ms for t in info.turns if t.role == "agent" and t.HasField("latency_ms")]
    assert latencies and all(0 < ms < 120_000 for ms in latencies)
    assert any(d.subject == "recording" for d in info.decisions)
    assert info.recording.uri and info.recording.format == "wav" and info.recording.sha256
    assert info.summary.summary.strip()


@pytest.mark.timeout(600)
async def test_records_call_end_to_end(records_stack: Env, api: Callable[[], Any], tmp_path: Path) -> None:
    st, env = records_stack.stack, records_stack.env
    assert st.nats is not None
    outcome = await asyncio.wait_for(
        run_scenario(
            load_scenario("hours"),
            target=f"sip:agent@127.0.0.1:{env['PA_SIP_PORT']}",
            nats_url=st.nats.url,
            wav=tmp_path / "hours.wav",
        ),
        timeout=300,
    )
    print("\n" + outcome.text)
    assert outcome.result.utterances and outcome.result.agent_turns, outcome.text

    call_id = await the_only_call(api())
    info = await wait_record(api(), call_id, lambda i: bool(i.recording.uri and i.summary.summary), 180)
    check_record(info, outcome.result.caller_user)
    check_recording(Path(info.recording.uri), outcome)
    await check_console(st, call_id)

    ok = records_stack.ok.wait(lambda rs: any(b"call.ended" in r.body for r in rs), 60)
    ended = next(r for r in ok if b'"event":"call.ended"' in r.body)
    body = check_signature(ended, OK_SECRET)
    assert body["event"] == "call.ended" and body["call"]["call_id"] == call_id
    assert body["call"]["from_number"] == info.from_number and "applied_seqs" not in body["call"]
    flaky = records_stack.flaky.wait(lambda rs: len(rs) >= 3, 60)
    assert [r.answered for r in flaky] == [500, 500, 200]
    assert all(check_signature(r, FLAKY_SECRET)["event"] == "call.ended" for r in flaky)
    gaps = [b.at - a.at for a, b in zip(flaky, flaky[1:], strict=False)]
    assert gaps[0] >= 0.8 and gaps[1] >= 1.6 and gaps[1] > gaps[0]  # back-off doubles
    deliveries = await delivery_status(env["PA_RECORDS_DB"], call_id)

    await asyncio.to_thread(st.restart, "records")
    await wait_consumers_idle(st.nats.url)
    again = await wait_record(api(), call_id, lambda i: i.ended_unix_ns > 0, 60)
    assert again == info  # nothing lost, nothing applied twice
    assert await delivery_status(env["PA_RECORDS_DB"], call_id) == deliveries


async def check_console(st: Stack, call_id: str) -> None:
    """The operator console (open on loopback: the stack sets no API token) times the real call's
    turns from the edge's playout records: mouth-to-ear and the playout hop of each answer."""
    import aiohttp

    console = str(next(r for r in st.status() if r["service"] == "records")["console"])
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{console}api/calls/{call_id}") as r:
            assert r.status == 200
            view = await r.json()
    hops = [t["hops_ms"] for t in view["waterfall"]["turns"]]
    timed = [h for h in hops if h["mouth_to_ear"] is not None]
    assert timed, hops
    assert all(0 < h["mouth_to_ear"] < 120_000 and h["tts_first_audio->first_rtp"] is not None for h in timed)


async def delivery_status(db: str, call_id: str) -> list[tuple[str, str, str, int, int]]:
    def read() -> list[tuple[str, str, str, int, int]]:
        store = RecordStore(db)
        try:
            rows = store.deliveries(call_id)
        finally:
            store.close()
        return sorted((d.url.rsplit(":", 1)[1], d.event, d.status, d.attempts, d.last_code) for d in rows)

    rows = await asyncio.to_thread(read)
    ended = [r for r in rows if r[1] == "call.ended"]
    assert len(ended) == 2 and all(r[2] == "delivered" and r[4] == 200 for r in ended), rows
    assert sorted(r[3] for r in ended) == [1, 3], rows  # the failing receiver took three attempts
    return rows


async def wait_consumers_idle(nats_url: str, timeout: float = 60.0) -> None:
    """Until the records worker's durable consumers have nothing pending or unacknowledged."""
    import nats
    from phoneagent.runtime.bus_auth import BusAuth

    nc = await nats.connect(nats_url, **BusAuth.from_env().connect_options())  # the operator's user
    try:
        js, deadline = nc.jetstream(), time.monotonic() + timeout
        for stream in (subjects.CALLS_STREAM, subjects.AUDIT_STREAM):
            while True:
                ci = await js.consumer_info(stream, f"records-{stream.lower()}")
                if ci.num_pending == 0 and ci.num_ack_pending == 0:
                    break
                assert time.monotonic() < deadline, f"records consumer of {stream} still busy"
                await asyncio.sleep(0.2)
    finally:
        await nc.close()
