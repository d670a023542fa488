"""Per-frame cost of the edge's media work: codecs, SRTP and the denoiser, per 20 ms frame.

    python -m phoneagent.devtools.media_bench [--seconds 10]

Each line is CPU time (``time.process_time``, so waiting for a busy CPU is not counted, though
a contended core still runs slower) per 20 ms frame of one call direction, and what that is as a
share of one core for one call (50 frames a second). Audio is speech-like (a voiced harmonic
signal with noise), not silence, so the codecs and RNNoise do their full work.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from phoneagent.audio.denoise import Denoiser
from phoneagent.audio.g711 import PCMU
from phoneagent.audio.g722 import G722Codec
from phoneagent.audio.opus import OpusCodec
from phoneagent.edge.media.rtp import RtpPacket
from phoneagent.edge.media.srtp import Crypto, SrtpContext, SrtpKeys


def _signal(rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    phase = 2 * np.pi * np.cumsum(120 + 30 * np.sin(2 * np.pi * 3 * t)) / rate
    voice = sum(np.sin(k * phase) / k for k in range(1, 16)) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
    noise = np.random.default_rng(0).normal(0, 0.05, len(t))
    return (6000 * (voice / np.abs(voice).max() + noise)).astype(np.int16)


def _per_frame(frames: list[Any], work: Callable[[Any], object]) -> float:
    start = time.process_time()
    for f in frames:
        work(f)
    return (time.process_time() - start) / len(frames)


def run(seconds: float) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    narrow, wide = _signal(8000, seconds), _signal(16000, seconds)
    f8 = [narrow[i : i + 160] for i in range(0, len(narrow) - 159, 160)]
    f16 = [wide[i : i + 320] for i in range(0, len(wide) - 319, 320)]
    out.append(("G.711 mu-law encode", _per_frame(f8, PCMU.encode)))
    ulaw = [PCMU.encode(f) for f in f8]
    out.append(("G.711 mu-law decode", _per_frame(ulaw, PCMU.decode)))
    enc, dec = G722Codec(), G722Codec()
    out.append(("G.722 encode (16 kHz)", _per_frame(f16, enc.encode)))
    g722 = [G722Codec().encode(f) for f in f16]
    out.append(("G.722 decode (16 kHz)", _per_frame(g722, dec.decode)))
    enc_o, dec_o = OpusCodec(), OpusCodec()
    out.append(("Opus encode (16 kHz, 32 kbit/s)", _per_frame(f16, enc_o.encode)))
    opus_sender = OpusCodec()
    opus = [opus_sender.encode(f) for f in f16]
    out.append(("Opus decode (48 kHz filtered to 16 kHz)", _per_frame(opus, dec_o.decode)))
    for suite in ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"):
        a, b = Crypto.new(1, suite), Crypto.new(1, suite)
        tx, rx = SrtpContext(SrtpKeys(a, b)), SrtpContext(SrtpKeys(b, a))
        packets = [RtpPacket(0, i & 0xFFFF, 160 * i, 1, p).to_bytes() for i, p in enumerate(ulaw)]
        out.append((f"SRTP protect {suite}", _per_frame(packets, tx.protect)))
        sender = SrtpContext(SrtpKeys(a, b))  # a fresh sender: libsrtp refuses to protect an index twice
        protected = [sender.protect(p) for p in packets]
        out.append((f"SRTP unprotect {suite}", _per_frame(protected, rx.unprotect)))
    for rate, frames in ((8000, f8), (16000, f16)):
        d = Denoiser(rate)
        out.append(
            (f"RNNoise denoiser at {rate // 1000} kHz (resampling included)", _per_frame(frames, d.process))
        )
        d.close()
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m phoneagent.devtools.media_bench", description=__doc__.split("\n")[0]
    )
    p.add_argument("--seconds", type=float, default=10.0, help="audio per measurement (default 10)")
    args = p.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"media bench: {os.cpu_count()} cores, load {load:.1f} at start, {args.seconds:g} s of audio each")
    print("| work | µs per 20 ms frame | % of one core per call direction |\n|---|---|---|")
    for name, cost in run(args.seconds):
        print(f"| {name} | {cost * 1e6:.1f} | {cost * 50 * 100:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
