"""Debian's baresip, driven non-interactively, calls the edge service: it sends a 440 Hz WAV as its
microphone (aufile), the edge answers and publishes the caller's audio, and baresip hangs up when its
run time (``-t``) is over."""

from __future__ import annotations

import asyncio
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
from phoneagent.devtools.harness.demo import free_udp_port  # free for UDP and TCP: SIP listens on both
from phoneagent.runtime import subjects
from phoneagent.v1 import call_pb2, media_pb2
from support.common import wait_for
from support.edge import Edge
from support.sip_phone import band_energy, collect, tone

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip is not installed (apt-get baresip)"),
]
MODULES = Path("/usr/lib/baresip/modules")


def baresip_config(conf: Path, wav: Path) -> None:
    conf.mkdir()
    lines = [
        f"module_path {MODULES}",
        "module g711.so",
        "module aufile.so",
        "module account.so",
        "module menu.so",
        f"sip_listen 127.0.0.1:{free_udp_port()}",
        f"audio_source aufile,{wav}",
        "audio_player aufile,/dev/null",
        "audio_alert aufile,/dev/null",
        "rtp_ports 43000-43998",
        "call_max_calls 1",
    ]
    (conf / "config").write_text("\n".join(lines) + "\n")
    (conf / "accounts").write_text("<sip:baresip@127.0.0.1>;regint=0;audio_codecs=PCMU\n")


async def test_baresip_calls_sends_audio_and_hangs_up(edge: Edge, tmp_path: Path) -> None:
    wav = tmp_path / "in.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(tone(440, 8000 * 20).astype("<i2").tobytes())
    baresip_config(tmp_path / "conf", wav)
    before = len(edge.lifecycle("started"))
    proc = await asyncio.create_subprocess_exec(
        "baresip",
        "-f",
        str(tmp_path / "conf"),
        "-4",
        "-n",
        "127.0.0.1",
        "-t",
        "6",
        "-e",
        f"/dial sip:+14155550134@127.0.0.1:{edge.port}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
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
        if proc.returncode is None:
            proc.kill()
        out = (await proc.communicate())[0].decode(errors="replace")
        print(out[-3000:])
