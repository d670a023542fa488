"""Concurrency benchmark of the edge: N simultaneous SIP calls on 127.0.0.1, how clean the audio stays.

    python -m phoneagent.devtools.edge_bench [--calls 10,25,50] [--seconds 20] [--late-ms 40]
        [--srtp] [--codec PCMU|PCMA|G722|OPUS] [--noise-suppression sip]

The edge runs as its own process (``phone-agent serve edge``) against a private nats-server. This
process plays everything around it: the four stages (trivial session replicas, so claims succeed),
a TTS stand-in that streams a 1 kHz tone to every answered call (as TTS does, faster than real time,
in 200 ms chunks), and N callers (our SIP user agent, 20 ms packets of ``--codec``, G.711 by
default, SRTP with ``--srtp``) speaking a 440 Hz tone. The edge's noise suppression is off unless
``--noise-suppression sip`` turns it on (then every caller's audio goes through RNNoise).

Measured at the callers over the steady window (all calls up): RFC 3550 interarrival jitter of the
edge's RTP, packets later than ``--late-ms`` behind their best-case transit (what a jitter buffer of
that depth would miss), lost packets (sequence gaps); and the edge process's CPU from /proc/<pid>/stat.
The callers' own scheduling lag is reported too: on a loaded machine it inflates the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from phoneagent.edge.media.pacer import Pacer
from phoneagent.edge.media.rtp import RtpError, parse_rtp
from phoneagent.edge.rtp_session import RtpSession
from phoneagent.edge.sip import Dialog, UAConfig, UserAgent, negotiated, offer
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.bus_auth import OPERATOR, BusAuth
from phoneagent.runtime.natsserver import NatsServer
from phoneagent.runtime.sessions import SessionHost
from phoneagent.runtime.tasks import TaskOwner
from phoneagent.v1 import call_pb2, common_pb2, media_pb2, session_pb2

HOST = "127.0.0.1"
CHUNK_FRAMES = 10  # 200 ms per SpeechChunk


class MeasuredRtp(RtpSession):
    """A caller's RTP session that records (arrival, sequence, timestamp) of every packet it gets."""

    arrivals: list[tuple[float, int, int]]

    def on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            pkt = parse_rtp(data)
            self.arrivals.append((time.monotonic(), pkt.sequence, pkt.timestamp))
        except RtpError:
            pass
        super().on_datagram(data, addr)


@dataclass
class CallerLeg:
    rtp: MeasuredRtp
    dialog: Dialog | None = None
    heard: list[tuple[float, bool]] = field(default_factory=list)  # (time, frame carried the tone)


@dataclass
class Result:
    calls: int
    answered: int
    jitter_ms: float
    late_pct: float
    lost_pct: float
    edge_cpu_pct: float
    caller_lag_ms: float
    tone_pct: float

    @property
    def calls_per_core(self) -> float:
        return self.answered / (self.edge_cpu_pct / 100) if self.edge_cpu_pct else 0.0


class _Session:
    async def start(self) -> None:
        return None

    async def close(self, reason: str) -> None:
        return None


async def _session(claim: session_pb2.SessionClaim, taken_over: bool) -> _Session:
    return _Session()


def _tone(samples: int, start: int, freq: float = 1000.0, rate: int = 8000) -> np.ndarray:
    t = (np.arange(samples) + start) / rate
    return (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def stream_tone(bus: Bus, call_id: str, seconds: float, rate: int = 8000) -> None:
    """The TTS stand-in: one long reply of a 1 kHz tone, in 200 ms chunks at the call's rate."""
    chunks = int(seconds * 50 / CHUNK_FRAMES) + 1
    size = rate // 50 * CHUNK_FRAMES
    for i in range(chunks):
        pcm = _tone(size, i * size, rate=rate)
        chunk = media_pb2.SpeechChunk(
            meta=common_pb2.EventMeta(call_id=call_id, generation_id=1),
            sequence=i,
            pcm=pcm.astype("<i2").tobytes(),
            sample_rate=rate,
            last_in_generation=i == chunks - 1,
        )
        await bus.publish(subjects.speech(call_id), chunk)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarise(
    legs: list[CallerLeg], since: float, until: float, late_ms: float, clock: int = 8000
) -> tuple[float, float, float]:
    """(mean RFC 3550 jitter ms, late %, lost %) over the packets that arrived in [since, until];
    ``clock``: the RTP clock rate (48000 for Opus)."""
    jitters, late, lost, total = [], 0, 0, 0
    for leg in legs:
        got = [(t, s, ts) for t, s, ts in leg.rtp.arrivals if since <= t <= until]
        if len(got) < 2:
            continue
        transit = np.array([t - ts / clock for t, _, ts in got])
        transit -= transit[0]
        transit = (transit + 2**31 / clock) % (2**32 / clock) - 2**31 / clock  # timestamp wrap
        d = np.abs(np.diff(transit))
        j = 0.0
        for x in d:
            j += (x - j) / 16
        jitters.append(j * 1000)
        late += int(np.sum(transit - transit.min() > late_ms / 1000))
        seqs = np.unwrap(np.array([s for _, s, _ in got], float), period=65536)
        expected = int(seqs.max() - seqs.min() + 1)
        lost += max(0, expected - len(got))
        total += expected
    total = total or 1
    return float(np.mean(jitters)) if jitters else 0.0, 100 * late / total, 100 * lost / total


class Bench:
    def __init__(
        self,
        nats_url: str,
        edge_port: int,
        edge_pid: int,
        late_ms: float,
        codec: str = "PCMU",
        srtp: bool = False,
    ) -> None:
        self.codec = codec
        self.srtp = srtp
        self.rates: dict[str, int] = {}  # call id -> playout rate
        self.nats_url = nats_url
        self.edge_port = edge_port
        self.edge_pid = edge_pid
        self.late_ms = late_ms
        self.bus = Bus("bench")
        self.tts_seconds = 0.0
        self.tts = TaskOwner("bench-tts")

    async def on_life(self, ev: call_pb2.CallEvent, _: Delivery) -> None:
        if ev.WhichOneof("event") == "started":
            self.rates[ev.started.meta.call_id] = ev.started.playout_rate or 8000
        if ev.WhichOneof("event") == "answered":
            call_id = ev.answered.meta.call_id
            rate = self.rates.pop(call_id, 8000)
            self.tts.spawn(stream_tone(self.bus, call_id, self.tts_seconds, rate), call_id)

    async def _dial(self, ua: UserAgent, legs: list[CallerLeg], i: int) -> None:
        rtp = await MeasuredRtp.open(HOST, 30000, 39999)
        assert isinstance(rtp, MeasuredRtp)
        rtp.arrivals = []
        leg = CallerLeg(rtp)
        legs.append(leg)
        local = offer(HOST, rtp.port, (self.codec,), srtp="required" if self.srtp else "off")
        try:
            leg.dialog = await ua.call(f"sip:+1415555{i:04d}@{HOST}:{self.edge_port}", local, timeout_s=15)
        except Exception:  # noqa: BLE001 - a refused call is counted, not fatal
            return
        assert leg.dialog.remote_sdp is not None
        rtp.start(negotiated(leg.dialog.remote_sdp, local))

    async def run(self, n: int, seconds: float) -> Result:
        self.tts_seconds = seconds + 10
        ua = UserAgent(UAConfig(host=HOST, port=0, user="bench", max_calls=n + 10))
        await ua.start()
        legs: list[CallerLeg] = []
        lags: list[float] = []
        stop = asyncio.Event()
        speaker = asyncio.ensure_future(self._speak(legs, lags, stop))
        try:
            for i in range(0, n, 5):  # five INVITEs at a time
                await asyncio.gather(*(self._dial(ua, legs, j) for j in range(i, min(n, i + 5))))
            await asyncio.sleep(1.0)  # let every call settle before measuring
            since, cpu0, lag0 = time.monotonic(), cpu_seconds(self.edge_pid), len(lags)
            await asyncio.sleep(seconds)
            until, cpu1 = time.monotonic(), cpu_seconds(self.edge_pid)
        finally:
            stop.set()
            await speaker
            for leg in legs:
                if leg.dialog is not None:
                    await leg.dialog.bye()
                leg.rtp.close()
            await ua.close()
        clock = 48000 if self.codec == "OPUS" else 8000
        jitter, late, lost = summarise(legs, since, until, self.late_ms, clock)
        window = lags[lag0:] or [0.0]
        heard = [tone for leg in legs for t, tone in leg.heard if since <= t <= until]
        return Result(
            n,
            sum(1 for leg in legs if leg.dialog is not None),
            jitter,
            late,
            lost,
            100 * (cpu1 - cpu0) / (until - since),
            float(np.percentile(window, 99)) * 1000,
            100 * sum(heard) / max(1, len(heard)),
        )

    async def _speak(self, legs: list[CallerLeg], lags: list[float], stop: asyncio.Event) -> None:
        """Every caller speaks a 440 Hz tone, one packet per 20 ms, from one shared clock."""
        pacer, n = Pacer(0.02), 0
        while not stop.is_set():
            tick = await pacer.next_tick()
            lags.append(tick.lateness)
            frames = {r: _tone(r // 50, n * r // 50, 440.0, r) for r in (8000, 16000)}
            n += 1
            for leg in legs:
                if leg.dialog is not None:
                    leg.rtp.send_audio(frames[leg.rtp.sample_rate], True)
                    got = leg.rtp.pull_frame()
                    if got is not None:
                        leg.heard.append((tick.now, int(np.abs(got).max()) > 3000))


def start_edge(
    nats_url: str, workdir: Path, max_calls: int, auth: BusAuth, noise_suppression: str = ""
) -> tuple[subprocess.Popen[bytes], int]:
    status = workdir / "edge.status"
    env = dict(
        os.environ,
        **auth.env(),
        PA_NATS_URL=nats_url,
        PA_STATUS_FILE=str(status),
        PA_SIP_PORT="0",
        PA_HTTP_PORT="0",
        PA_WEB_ENABLED="false",
        PA_MAX_CALLS=str(max_calls),
        PA_RTP_PORT_MIN="20000",
        PA_RTP_PORT_MAX="29999",
        PA_LOG_LEVEL="WARNING",
        PA_DRAIN_TIMEOUT_S="1",
        PA_NOISE_SUPPRESSION=noise_suppression,
    )
    log = (workdir / "edge.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "phoneagent.cli", "serve", "edge"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while not (status.exists() and status.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the edge did not start; see {workdir / 'edge.log'}")
        time.sleep(0.1)
    with urllib.request.urlopen(f"http://127.0.0.1:{status.read_text().strip()}/readyz", timeout=5) as r:
        sip = json.loads(r.read())["sip"]
    return proc, int(sip.rpartition(":")[2])


async def main_async(
    calls: list[int],
    seconds: float,
    late_ms: float,
    codec: str = "PCMU",
    srtp: bool = False,
    denoise: str = "",
) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="pa-edge-bench-") as tmp:
        work = Path(tmp)
        nats = NatsServer(work / "nats")
        nats.start()
        # the bench plays every stage and watches every call: the operator's user
        stage_bus = Bus("bench-stages")
        await stage_bus.connect(nats.url, auth=nats.auth(OPERATOR))
        await streams.ensure(stage_bus.jetstream())  # before the edge, which waits for them
        edge, port = start_edge(nats.url, work, max(calls) + 10, nats.auth("edge"), denoise)
        bench = Bench(nats.url, port, edge.pid, late_ms, codec, srtp)
        results: list[Result] = []
        try:
            await bench.bus.connect(nats.url, auth=nats.auth(OPERATOR))
            hosts = [SessionHost(stage_bus, st, f"{st}-bench", _session) for st in subjects.STAGES]
            for h in hosts:
                await h.start()
            await bench.bus.subscribe(
                subjects.ALL_LIFECYCLE, call_pb2.CallEvent, bench.on_life, lane=Lane.CONTROL
            )
            for n in calls:
                results.append(await bench.run(n, seconds))
                print(row(results[-1]), flush=True)
                await asyncio.sleep(2.0)  # calls released before the next step
            for h in hosts:
                await h.close()
        finally:
            await bench.tts.close(timeout=5.0)
            await bench.bus.close()
            await stage_bus.close()
            edge.terminate()
            edge.wait(15)
            nats.stop()
    return results


HEADER = (
    "| calls | answered | jitter ms (RFC 3550) | late % | lost % | agent tone heard % | edge CPU % | "
    "calls/core | caller lag p99 ms |\n|---|---|---|---|---|---|---|---|---|"
)


def row(r: Result) -> str:
    return (
        f"| {r.calls} | {r.answered} | {r.jitter_ms:.2f} | {r.late_pct:.2f} | {r.lost_pct:.2f} | "
        f"{r.tone_pct:.1f} | {r.edge_cpu_pct:.1f} | {r.calls_per_core:.0f} | {r.caller_lag_ms:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", default="10,25,50", help="comma-separated concurrent call counts")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per step")
    parser.add_argument("--late-ms", type=float, default=40.0, help="lateness that counts a frame as late")
    parser.add_argument("--srtp", action="store_true", help="callers offer RTP/SAVP with SDES keys")
    parser.add_argument(
        "--codec", default="PCMU", choices=("PCMU", "PCMA", "G722", "OPUS"), help="the callers' codec"
    )
    parser.add_argument(
        "--noise-suppression", default="", choices=("", "sip"), help="the edge's PA_NOISE_SUPPRESSION (off)"
    )
    args = parser.parse_args()
    calls = [int(c) for c in args.calls.split(",") if c.strip()]
    print(
        f"edge bench: python {sys.version.split()[0]}, {os.cpu_count()} cores, "
        f"load {os.getloadavg()[0]:.1f}, {args.seconds:.0f} s per step, late > {args.late_ms:.0f} ms, "
        f"{args.codec}{' over SRTP' if args.srtp else ''}, "
        f"noise suppression {args.noise_suppression or 'off'}"
    )
    print(HEADER, flush=True)
    results = asyncio.run(
        main_async(calls, args.seconds, args.late_ms, args.codec, args.srtp, args.noise_suppression)
    )
    ok = [r for r in results if r.late_pct < 1.0 and r.answered == r.calls]
    if ok:
        best = max(ok, key=lambda r: r.calls)
        print(
            f"sustained with < 1% late frames: {best.calls} calls at {best.edge_cpu_pct:.0f}% of a core "
            f"(about {best.calls_per_core:.0f} calls per core)"
        )
    else:
        print("no step kept late frames under 1%")


if __name__ == "__main__":
    main()
