"""Onset benchmark: are the caller's first words heard, whoever speaks and however softly?

    python -m phoneagent.devtools.onset_bench [--count 100] [--per-call 10] [--seed 16] [--snr clean,10]

Runs nats-server, the real edge and the real ASR service (faster-whisper tiny.en) as processes,
and stands in for the other stages on the bus: the stand-in TTS session is the agent, which
speaks a short prompt (SpeechChunks to the edge) before every caller turn. The caller is a real
SIP UA sending G.711 mu-law at 8 kHz (the harness's RTP endpoint); after the agent's audio has
stopped it waits 0.3-3 s, then says a question in one of many voices, levels and onset shapes
(:mod:`phoneagent.devtools.onset_voices`). Reported per noise condition: the share of
utterances whose transcript misses the reference's first word, and the word error rate.
Each utterance is also decoded offline in one piece (same model, same G.711 audio): "lost live
only" counts first words the offline decode heard and the live call did not - what the path
from RTP to the decoder lost, apart from the model's own mistakes. Numbers depend on the
machine and its load; the header records both.

``--segmenter-only`` replays the same utterances through G.711, the edge's resampler and the
ASR's segmenter and decoder alone (no processes, no bus, faster than real time, the same
every run), to compare VAD and pre-roll settings (``--pre-roll-ms``, ``--onset-lookback-ms``)
on the same audio. Its decoder is the one the ASR service builds from its settings, so the
``PA_ASR_*`` decoder variables (model, prompt, lead-in, beam) are compared the same way; the
report then gives the mean CPU time of an utterance's decodes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from phoneagent.asr.engines.base import engine_options
from phoneagent.asr.segmenter import Segmenter, SegmenterConfig, Utterance
from phoneagent.asr.settings import AsrSettings
from phoneagent.devtools.asr_bench import _words, machine, word_error_rate
from phoneagent.devtools.harness.caller import unique_user
from phoneagent.devtools.harness.demo import demo_env, free_udp_port
from phoneagent.devtools.harness.impair import SPEECH_DBFS, Impairer, Impairments
from phoneagent.devtools.harness.rtp_endpoint import RtpEndpoint
from phoneagent.devtools.onset_voices import Planned, Voices, all_voices, plan
from phoneagent.edge.sip import SipURI, UAConfig, UserAgent, negotiated, offer
from phoneagent.runtime import streams, subjects
from phoneagent.runtime.bus import Bus, Delivery
from phoneagent.runtime.bus_auth import OPERATOR, BusAuth
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.sessions import SessionHost
from phoneagent.runtime.settings import load
from phoneagent.runtime.stack import Stack
from phoneagent.v1 import common_pb2, media_pb2, session_pb2, speech_pb2

PROMPT = "Sure. Is there anything else I can help you with?"
STAND_INS = ("llm", "tts", "policy")
FINAL_WAIT_S = 20.0
LATE_ONSET_MS = 300.0  # the ASR's default pre-roll: an onset found later may have cut the first word


@dataclass
class Heard:
    planned: Planned
    text: str = ""
    missed_first: bool = True
    onset_lag_ms: float | None = None  # ASR's speech start minus when the caller started talking
    offline: str = ""  # the same audio decoded offline in one piece (no edge, no VAD)
    lost: dict[str, int] = field(default_factory=dict)  # caller frames lost meanwhile, by stage
    heard_ms: float = 0.0  # audio the finals span (speech start to end) against the utterance's length
    decode_cpu_s: float | None = None  # --segmenter-only: CPU time of the decodes of this utterance

    @property
    def offline_missed(self) -> bool:
        return missed_first_word(self.planned.text, self.offline)


@dataclass
class Agent:
    """The stand-in stages; the TTS one notes each call it is given (the bench's agent)."""

    bus: Bus
    calls: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    hosts: list[SessionHost] = field(default_factory=list)

    async def start(self) -> None:
        for stage in STAND_INS:

            async def factory(claim: session_pb2.SessionClaim, _: bool, stage: str = stage) -> _Quiet:
                if stage == "tts":
                    self.calls.put_nowait(claim.call.meta.call_id)
                return _Quiet()

            host = SessionHost(self.bus, stage, f"{stage}-onset-bench", factory)
            await host.start()
            self.hosts.append(host)

    async def say(self, call_id: str, generation: int, pcm: np.ndarray) -> None:
        """Speak ``pcm`` (8 kHz int16) as one generation, in 100 ms chunks."""
        step = 800
        for seq, start in enumerate(range(0, len(pcm), step)):
            chunk = media_pb2.SpeechChunk(
                meta=common_pb2.EventMeta(call_id=call_id, generation_id=generation, producer="tts"),
                sequence=seq,
                pcm=pcm[start : start + step].astype("<i2").tobytes(),
                sample_rate=8000,
                last_in_generation=start + step >= len(pcm),
            )
            await self.bus.publish(subjects.speech(call_id), chunk)

    async def close(self) -> None:
        for host in self.hosts:
            await host.close()


class _Quiet:
    async def start(self) -> None:
        return None

    async def close(self, reason: str) -> None:
        return None


LossReader = Callable[[], dict[str, int]]


def lost_frames(ports: list[int]) -> dict[str, int]:
    """``pa_caller_audio_lost_frames_total`` by stage, summed over the services on ``ports``."""
    out: dict[str, int] = {}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5.0) as resp:
            text = resp.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name != "pa_caller_audio_lost_frames":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    stage = sample.labels.get("stage", "")
                    out[stage] = out.get(stage, 0) + int(sample.value)
    return out


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v > before.get(k, 0)}


CONTRACTIONS = ("'s", "'re", "'ll", "'d", "'ve", "'m")


def missed_first_word(reference: str, heard: str) -> bool:
    """True unless the first word of ``reference`` is among the first two words heard. A
    contraction of it counts as heard ("what's" for "What should", "where's" for "Where is"):
    the word's sound reached the decoder, which is what this counts."""
    ref, hyp = _words(reference), _words(heard)
    return not ref or not any(_base(h) == ref[0] for h in hyp[:2])


def _base(word: str) -> str:
    for tail in CONTRACTIONS:
        if word.endswith(tail) and len(word) > len(tail):
            return word[: -len(tail)]
    return word


async def _agent_stopped(ep: RtpEndpoint, since: float, timeout: float = 30.0) -> float:
    """Loop time when the agent's prompt (first speech after ``since``) ended at the caller."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        last = ep.last_speech()
        if ep.first_speech_after(since) is not None and last is not None and loop.time() - last.mono > 0.3:
            return last.mono + 0.02
        await asyncio.sleep(0.02)
    raise InvalidArgument("the agent's prompt never reached the caller")


async def run_call(
    bus: Bus,
    agent: Agent,
    target: str,
    utterances: list[tuple[Planned, np.ndarray]],
    prompt: np.ndarray,
    snr: float | None,
    seed: int,
    losses: LossReader,
) -> list[Heard]:
    finals: list[speech_pb2.Transcript] = []
    level = float(np.mean([p.level_dbfs for p, _ in utterances]))
    # The harness sets noise against its nominal speech level: shift it to this call's level.
    snr_arg = None if snr is None else snr + SPEECH_DBFS - level
    ep = RtpEndpoint(Impairer(Impairments(snr_db=snr_arg, seed=seed)))
    ua = UserAgent(UAConfig(host="127.0.0.1", user=unique_user("+14155550100"), codecs=("PCMU",)))
    await ua.start()
    out: list[Heard] = []
    try:
        local = offer("127.0.0.1", await ep.open(), ("PCMU",))
        dialog = await asyncio.wait_for(ua.call(SipURI.parse(target), local), 30)
        if dialog.remote_sdp is None:
            raise InvalidArgument("the edge answered without SDP")
        ep.start(negotiated(dialog.remote_sdp, local))
        call_id = await asyncio.wait_for(agent.calls.get(), 30)

        async def on_final(tr: speech_pb2.Transcript, _: Delivery) -> None:
            if tr.final:
                finals.append(tr)

        sub = await bus.subscribe(subjects.transcript(call_id), speech_pb2.Transcript, on_final)
        loop = asyncio.get_running_loop()
        for gen, (p, pcm) in enumerate(utterances, 1):
            asked = loop.time()
            await agent.say(call_id, gen, prompt)
            stopped = await _agent_stopped(ep, asked)
            await asyncio.sleep(max(0.0, stopped + p.delay_s - loop.time()))
            before = await asyncio.to_thread(losses)
            start_ns = time.time_ns()
            _, end_ns = await ep.play(pcm)
            heard = await _heard(p, finals, start_ns, end_ns)
            heard.lost = _delta(await asyncio.to_thread(losses), before)
            out.append(heard)
        await bus.unsubscribe(sub)
        await dialog.bye()
    finally:
        await ep.close()
        await ua.close()
    return out


async def _heard(p: Planned, finals: list[speech_pb2.Transcript], start_ns: int, end_ns: int) -> Heard:
    """The finals for speech between ``start_ns`` and ``end_ns`` (waits for the last one)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FINAL_WAIT_S
    mine: list[speech_pb2.Transcript] = []
    while loop.time() < deadline:
        mine = [
            f for f in finals if f.speech_end_unix_ns >= start_ns and f.speech_start_unix_ns <= end_ns + 5e8
        ]
        if mine and time.time_ns() - max(f.emitted_unix_ns for f in mine) > 700_000_000:
            break
        await asyncio.sleep(0.05)
    text = " ".join(f.text.strip() for f in mine)
    lag = (min(f.speech_start_unix_ns for f in mine) - start_ns) / 1e6 if mine else None
    spanned = sum(f.speech_end_unix_ns - f.speech_start_unix_ns for f in mine) / 1e6
    return Heard(p, text, missed_first_word(p.text, text), lag, heard_ms=spanned)


def offline(
    heard: list[Heard], rendered: dict[int, np.ndarray], snr: float | None, seed: int, window_s: float
) -> None:
    """Decode each utterance offline (G.711 round trip, 16 kHz, 0.3 s of line noise either
    side): what the model makes of the audio itself, to tell recognition errors from lost onsets.
    The same every run: the decoder window (``PA_ASR_WINDOW_S``) is compared on it."""
    from phoneagent.asr.engines.base import create_engine
    from phoneagent.audio.g711 import ulaw_decode, ulaw_encode
    from phoneagent.audio.resample import resample

    engine = create_engine("faster-whisper", model="tiny.en", cpu_threads=1, window_s=window_s)
    engine.load()
    rng = np.random.default_rng(seed)
    try:
        for h in heard:
            pcm = rendered[id(h.planned)]
            x = np.concatenate([np.zeros(2400), pcm.astype(np.float64), np.zeros(2400)])
            if snr is not None:
                x += rng.normal(0.0, 32768 * 10 ** ((h.planned.level_dbfs - snr) / 20), len(x))
            line = ulaw_decode(ulaw_encode(np.clip(np.round(x), -32768, 32767).astype(np.int16)))
            h.offline = engine.transcribe(resample(line, 8000, 16000).astype(np.float32) / 32768.0).text
    finally:
        engine.close()


def replay(
    planned: list[tuple[Planned, np.ndarray]],
    lead_s: float,
    snr: float | None,
    seed: int,
    config: SegmenterConfig,
    settings: AsrSettings,
) -> list[Heard]:
    """The ASR's own share, without the edge and the bus: each utterance after ``lead_s`` plus
    its delay of quiet line (or noise), through G.711 and the edge's 8 to 16 kHz resampler in
    20 ms frames, the segmenter with Silero and ``config``, and a decode of each utterance it
    cuts, by the engine ``settings`` name (as the ASR service builds it, so ``PA_ASR_*`` decoder
    settings apply). Faster than real time, and the same every run: a VAD, pre-roll or decoder
    setting is compared here on the same audio, apart from the load and the network. Each
    utterance notes the CPU time of its decodes (the engine runs one thread per decode)."""
    from phoneagent.asr.engines.base import create_engine
    from phoneagent.asr.vad import SileroVad
    from phoneagent.audio.g711 import ulaw_decode, ulaw_encode
    from phoneagent.audio.resample import StreamResampler

    engine = create_engine(settings.engine, **engine_options(settings.engine, settings))
    engine.load()
    rng = np.random.default_rng(seed)
    out: list[Heard] = []
    try:
        for p, pcm in planned:
            lead = int(round((lead_s + p.delay_s) * 8000))
            x = np.concatenate([np.zeros(lead), pcm.astype(np.float64), np.zeros(12000)])
            if snr is not None:
                x += rng.normal(0.0, 32768 * 10 ** ((p.level_dbfs - snr) / 20), len(x))
            line = ulaw_decode(ulaw_encode(np.clip(np.round(x), -32768, 32767).astype(np.int16)))
            up = StreamResampler(8000, 16000)
            seg = Segmenter(SileroVad(), config)
            utts: list[Utterance] = []
            for i in range(0, len(line), 160):
                frame = up.process(line[i : i + 160]).astype(np.float32) / 32768.0
                utts += [e for e in seg.feed(frame, i / 8000) if isinstance(e, Utterance)]
            utts += [e for e in seg.flush(len(line) / 8000) if isinstance(e, Utterance)]
            cpu = time.process_time()
            text = " ".join(engine.transcribe(u.pcm).text.strip() for u in utts if len(u.pcm))
            cpu = time.process_time() - cpu
            lag = (utts[0].speech_start - lead / 8000) * 1000 if utts else None
            spanned = sum(u.speech_end - u.speech_start for u in utts) * 1000
            out.append(
                Heard(p, text, missed_first_word(p.text, text), lag, heard_ms=spanned, decode_cpu_s=cpu)
            )
    finally:
        engine.close()
    return out


def run_replay(args: argparse.Namespace, settings: AsrSettings) -> dict[str, list[Heard]]:
    voices = Voices()
    planned = plan(args.count, args.seed, args.voices.split(",") if args.voices else None)
    try:
        rendered = [(p, voices.render(p)) for p in planned]
        prompt_s = len(voices.render(Planned("piper:joe", PROMPT, -20.0, False, 0.0))) / 8000
    finally:
        voices.close()
    config = SegmenterConfig(pre_roll_ms=args.pre_roll_ms, onset_lookback_ms=args.onset_lookback_ms)
    results: dict[str, list[Heard]] = {}
    for cond in args.snr.split(","):
        snr = None if cond == "clean" else float(cond)
        results[cond] = heard = replay(rendered, prompt_s, snr, args.seed, config, settings)
        if args.offline:
            offline(heard, {id(p): pcm for p, pcm in rendered}, snr, args.seed, settings.window_s)
    return results


async def bench(
    args: argparse.Namespace, nats_url: str, auth: BusAuth, target: str, losses: LossReader
) -> dict[str, list[Heard]]:
    voices = Voices()
    planned = plan(args.count, args.seed, args.voices.split(",") if args.voices else None)
    try:
        rendered = [(p, voices.render(p)) for p in planned]
        prompt = voices.render(Planned("piper:joe", PROMPT, -20.0, False, 0.0))
    finally:
        voices.close()
    bus = Bus("onset-bench")
    await bus.connect(nats_url, auth=auth)  # the bench stands in for several stages: the operator
    await streams.ensure(bus.jetstream())
    agent = Agent(bus)
    await agent.start()
    results: dict[str, list[Heard]] = {}
    try:
        for cond in args.snr.split(","):
            snr = None if cond == "clean" else float(cond)
            heard: list[Heard] = []
            for c, i in enumerate(range(0, len(rendered), args.per_call)):
                heard += await run_call(
                    bus, agent, target, rendered[i : i + args.per_call], prompt, snr, args.seed + c, losses
                )
                print(f"  {cond}: {len(heard)}/{len(rendered)} utterances", file=sys.stderr, flush=True)
            results[cond] = heard
            if args.offline:
                window = load(AsrSettings).window_s  # the stack's ASR reads the same environment
                await asyncio.to_thread(
                    offline, heard, {id(p): pcm for p, pcm in rendered}, snr, args.seed, window
                )
    finally:
        await agent.close()
        await bus.close()
    return results


def report(results: dict[str, list[Heard]], info: dict[str, object], command: str) -> str:
    lines = [f"# {command}", f"# machine: {info}"]
    lines.append(
        f"{'condition':>11} {'utterances':>10} {'voices':>6} {'missed first word':>18} {'WER':>6} "
        f"{'offline missed':>14} {'offline WER':>11} {'lost live only':>14} {'decode CPU ms':>13} "
        f"{'onset lag ms p50/max':>20} "
        f"{'late':>4}"
    )
    for cond, heard in results.items():
        missed = sum(h.missed_first for h in heard)
        wer = word_error_rate([(h.planned.text, h.text) for h in heard])
        label = "clean" if cond == "clean" else f"{cond} dB SNR"
        voices = len({h.planned.voice for h in heard})
        pct = f"{missed}/{len(heard)} ({100 * missed / max(1, len(heard)):.1f}%)"
        done = [h for h in heard if h.offline]
        off = f"{sum(h.offline_missed for h in done)}/{len(done)}" if done else "-"
        off_wer = f"{word_error_rate([(h.planned.text, h.offline) for h in done]):.3f}" if done else "-"
        only = f"{sum(h.missed_first and not h.offline_missed for h in done)}" if done else "-"
        lags = [h.onset_lag_ms for h in heard if h.onset_lag_ms is not None]
        lag = f"{np.median(lags):.0f}/{max(lags):.0f}" if lags else "-"
        late = sum(v > LATE_ONSET_MS for v in lags)
        cpu = [h.decode_cpu_s for h in heard if h.decode_cpu_s is not None]
        dec = f"{1000 * float(np.mean(cpu)):.0f}" if cpu else "-"
        lines.append(
            f"{label:>11} {len(heard):>10} {voices:>6} {pct:>18} {wer:>6.3f} "
            f"{off:>14} {off_wer:>11} {only:>14} {dec:>13} {lag:>20} {late:>4}"
        )
    lines.append(f"# late: onsets the ASR found more than {LATE_ONSET_MS:.0f} ms after the caller began")
    lines.append("# decode CPU ms: --segmenter-only, mean CPU time of an utterance's decodes (finals)")
    for cond, heard in results.items():
        for h in heard:
            if h.missed_first:
                p = h.planned
                lines.append(
                    f"  missed [{cond}] {p.voice} {p.level_dbfs:g} dBFS soft={p.soft_onset} "
                    f"delay={p.delay_s}s lag={_ms(h.onset_lag_ms)} heard={h.heard_ms:.0f}ms "
                    f"lost={h.lost or 0}: {p.text!r} -> {h.text!r} (offline {h.offline!r})"
                    + (" LIVE ONLY" if h.offline and not h.offline_missed else "")
                )
    lost = [h for heard in results.values() for h in heard if h.lost]
    lines.append(f"# utterances during which caller frames were lost: {len(lost)}")
    for h in lost:
        lines.append(f"  lost {h.lost} during {h.planned.text!r} ({h.planned.voice})")
    return "\n".join(lines)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}ms"


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m phoneagent.devtools.onset_bench", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--count", type=int, default=100, help="utterances per condition (default 100)")
    ap.add_argument("--per-call", type=int, default=10, help="utterances per call (default 10)")
    ap.add_argument("--seed", type=int, default=16)
    ap.add_argument("--snr", default="clean,10", help="conditions: clean and/or SNR in dB (default clean,10)")
    ap.add_argument("--no-offline", dest="offline", action="store_false", help="skip the offline decodes")
    ap.add_argument("--voices", default="", help=f"comma-separated subset of: {','.join(all_voices())}")
    ap.add_argument(
        "--segmenter-only",
        action="store_true",
        help="replay the utterances through G.711 and the ASR's segmenter and decoder only (no edge, no bus)",
    )
    defaults = SegmenterConfig()
    ap.add_argument("--pre-roll-ms", type=int, default=defaults.pre_roll_ms, help="with --segmenter-only")
    ap.add_argument(
        "--onset-lookback-ms", type=int, default=defaults.onset_lookback_ms, help="with --segmenter-only"
    )
    ap.add_argument(
        "--data-dir", type=Path, default=None, help="where the stack keeps its files (default: a temp dir)"
    )
    args = ap.parse_args(argv)
    if args.count < 1 or args.per_call < 1:
        ap.error("--count and --per-call must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "python -m phoneagent.devtools.onset_bench " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    if args.segmenter_only:
        settings = load(AsrSettings)
        decoder = engine_options(settings.engine, settings)
        info = machine() | {
            "asr": settings.engine,
            "decoder": {k: v for k, v in decoder.items() if k not in ("device",)},
            "segmenter_only": True,
            "pre_roll_ms": args.pre_roll_ms,
            "onset_lookback_ms": args.onset_lookback_ms,
        }
        results = run_replay(args, settings)
        print(report(results, info | {"load_1m_after": round(os.getloadavg()[0], 2)}, command))
        return 0
    with tempfile.TemporaryDirectory(prefix="onset-bench-") as tmp:
        data = args.data_dir or Path(tmp)
        env = demo_env(data, free_udp_port())
        stack = Stack(data, services=("asr", "edge"), env=env)
        try:
            stack.start(ready_timeout=300, out=sys.stderr)
            assert stack.nats is not None
            info = machine() | {"asr": os.environ.get("PA_ASR_MODEL", "tiny.en")}
            target = f"sip:agent@127.0.0.1:{env['PA_SIP_PORT']}"
            ports = [c.port for c in stack.children]
            results = asyncio.run(
                bench(args, stack.nats.url, stack.nats.auth(OPERATOR), target, lambda: lost_frames(ports))
            )
        finally:
            stack.stop()
    print(report(results, info | {"load_1m_after": round(os.getloadavg()[0], 2)}, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
