"""Debian's baresip, driven non-interactively, calls the edge service: it sends a 440 Hz WAV as its
microphone (aufile), the edge answers and publishes the caller's audio, and baresip hangs up when its
run time (``-t``) is over."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import numpy as np
import pytest
from phoneagent.runtime import subjects
from phoneagent.v1 import call_pb2, media_pb2
from support.baresip import dial, finish, write_config, write_wav
from support.common import wait_for
from support.edge import Edge
from support.sip_phone import band_energy, collect, tone

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed (apt-get baresip)"),
]


async def test_baresip_calls_sends_audio_and_hangs_up(edge: Edge, tmp_path: Path) -> None:
    wav = write_wav(tmp_path / "in.wav", tone(440, 8000 * 20))
    conf = write_config(tmp_path / "conf", wav)
    before = len(edge.lifecycle("started"))
    proc = await dial(conf, f"sip:+14155550134@127.0.0.1:{edge.port}", 6)
    try:
        started = await wait_for(lambda: edge.lifecycle("started")[before:], timeout=10)
        call_id = started[0].meta.call_id
        audio = await collect(edge.bus, subjects.audio_in(call_id), media_pb2.AudioFrame)
        await wait_for(lambda: edge.lifecycle("answered", call_id), timeout=10)
        ended = await wait_for(lambda: edge.lifecycle("ended", call_id), timeout=15)
        assert ended[0].reason == call_pb2.END_REASON_CALLER_HANGUP
        loud = [p for f in audio if np.abs(p := np.frombuffer(f.pcm, "<i2")).max() > 1000]
        assert len(loud) >= 50, len(loud)
        assert band_energy(np.concatenate(loud[10:60]), 16000, 440) > 0.8
        await asyncio.wait_for(proc.wait(), 10)
    finally:
        print((await finish(proc))[-3000:])
