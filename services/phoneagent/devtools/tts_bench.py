"""TTS benchmark: ``python -m phoneagent.devtools.tts_bench [--engines kokoro,piper] [--streams 1,4]``.

For each engine and number of concurrent calls, every call speaks the same set of
replies through a real :class:`TtsStream` (normalise, chunk, synthesise, resample to
8 kHz, 20 ms frames) and the benchmark prints:

* time to first audio (TTFA): reply submitted -> first 20 ms frame out, p50 and p95;
* RTF: time from submit to the last frame, divided by the audio's duration (below 1 means
  the reply is produced faster than it plays), p50 and p95.

It also prints the machine it ran on (CPU count and load), since both numbers depend on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time

from phoneagent.runtime.settings import load
from phoneagent.tts.engines.base import TtsEngine, create_engine
from phoneagent.tts.settings import TtsSettings
from phoneagent.tts.stream import SpeechOut, SpeechRequest, TtsStream

REPLIES = [
    ["Sure, I can help you with that.", "What day works best for you?"],
    ["I found an opening with Dr. Patel on Nov 23rd at 3:30 pm.", "Would you like me to book it?"],
    ["Your balance is $42.50, and your last payment was on 2026-10-02.", "Anything else I can do?"],
    ["Your confirmation number is 48213957.", "You'll also get a text message with the details."],
    [
        "Of course, let me check that for you.",
        "It looks like your order shipped yesterday.",
        "It should arrive by Friday.",
    ],
]
VOICES = {"kokoro": "af_heart", "kokoro-torch": "af_heart"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def _one_call(
    engine: TtsEngine, voice: str, rounds: int, rate: int, ttfa: list[float], rtf: list[float]
) -> None:
    stream = TtsStream(engine, voice=voice, sample_rate=rate)
    try:
        generation = 0
        for _ in range(rounds):
            for reply in REPLIES:
                generation += 1
                started = time.monotonic()
                for seq, sentence in enumerate(reply):
                    stream.submit(
                        SpeechRequest(generation, generation, seq, sentence, final=seq == len(reply) - 1)
                    )
                frames = 0
                while True:
                    item = await asyncio.wait_for(stream.next(), 300)
                    if not isinstance(item, SpeechOut):
                        raise RuntimeError(f"synthesis failed: {item.error}")
                    if frames == 0:
                        ttfa.append(time.monotonic() - started)
                    frames += 1
                    if item.last_in_generation:
                        break
                rtf.append((time.monotonic() - started) / (frames * 0.02))
    finally:
        await stream.close()


async def run_engine(name: str, streams: list[int], rounds: int, rate: int, threads: int) -> list[str]:
    # The service's options (kokoro-torch: its weight files from PA_TTS_KOKORO_CONFIG/_WEIGHTS).
    engine = create_engine(name, **load(TtsSettings, threads=threads).engine_options(name))
    loaded = time.monotonic()
    await asyncio.to_thread(engine.load)
    load_s = time.monotonic() - loaded
    voice = VOICES.get(name, engine.voices()[0])
    # One untimed reply so lazy initialisation (phonemizer, ONNX allocations) is not measured.
    await _one_call(engine, voice, 0, rate, [], [])
    list(engine.synthesize("Warm up.", voice, 1.0))
    lines = []
    for count in streams:
        ttfa: list[float] = []
        rtf: list[float] = []
        await asyncio.gather(*(_one_call(engine, voice, rounds, rate, ttfa, rtf) for _ in range(count)))
        lines.append(
            f"{name:<13}{count:>8}{len(ttfa):>8}"
            f"{percentile(ttfa, 50) * 1000:>10.0f}{percentile(ttfa, 95) * 1000:>10.0f}"
            f"{percentile(rtf, 50):>9.2f}{percentile(rtf, 95):>9.2f}{statistics.mean(rtf):>9.2f}"
        )
    engine.close()
    lines.append(f"  ({name}: load {load_s:.2f} s, voice {voice}, engine threads {threads})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phoneagent.devtools.tts_bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--engines", default="kokoro,piper")
    parser.add_argument("--streams", default="1,4", help="concurrent calls, comma separated")
    parser.add_argument("--rounds", type=int, default=2, help="times each call speaks the reply set")
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per engine")
    args = parser.parse_args(argv)
    streams = [int(s) for s in args.streams.split(",")]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load[0]:.2f}, python {platform.python_version()}"
    )
    print(f"# {len(REPLIES)} replies x {args.rounds} rounds per call, {args.rate} Hz, 20 ms frames")
    print(
        f"{'engine':<13}{'calls':>8}{'replies':>8}{'ttfa p50':>10}{'ttfa p95':>10}"
        f"{'rtf p50':>9}{'rtf p95':>9}{'rtf avg':>9}"
    )
    print(f"{'':<13}{'':>8}{'':>8}{'(ms)':>10}{'(ms)':>10}")
    for name in args.engines.split(","):
        for line in asyncio.run(run_engine(name, streams, args.rounds, args.rate, args.threads)):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
