"""Debian's baresip as a caller, driven non-interactively: its microphone is a WAV file (aufile),
it dials one URI at start (``-e /dial``) and quits after ``seconds`` (``-t``)."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
from phoneagent.devtools.harness.demo import free_udp_port

MODULES = Path("/usr/lib/baresip/modules")


def write_wav(path: Path, pcm: np.ndarray, rate: int = 8000, channels: int = 1) -> Path:
    """A WAV of ``pcm`` (mono), copied to each of ``channels`` (baresip's Opus wants two)."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.repeat(pcm.astype("<i2"), channels).tobytes())
    return path


def write_config(
    conf: Path,
    wav: Path,
    *,
    extra: tuple[str, ...] = (),
    rtp_ports: str = "43000-43998",
    modules: tuple[str, ...] = ("g711",),
    account: str = "audio_codecs=PCMU",
) -> Path:
    """A config folder: ``modules`` (codecs, srtp, sndfile: loaded before the others), the WAV
    as microphone, SIP on a free port of 127.0.0.1, one account with ``account``'s parameters."""
    conf.mkdir()
    lines = [
        f"module_path {MODULES}",
        *(f"module {m}.so" for m in modules),
        "module aufile.so",
        "module account.so",
        "module menu.so",
        f"sip_listen 127.0.0.1:{free_udp_port()}",
        f"audio_source aufile,{wav}",
        "audio_player aufile,/dev/null",
        "audio_alert aufile,/dev/null",
        f"rtp_ports {rtp_ports}",
        "call_max_calls 1",
        *extra,
    ]
    (conf / "config").write_text("\n".join(lines) + "\n")
    (conf / "accounts").write_text(f"<sip:baresip@127.0.0.1>;regint=0;{account}\n")
    return conf


async def dial(conf: Path, uri: str, seconds: int, source: str = "127.0.0.1") -> asyncio.subprocess.Process:
    """baresip with ``conf`` calling ``uri`` from the loopback address ``source``; it hangs up
    and exits after ``seconds``."""
    return await asyncio.create_subprocess_exec(
        "baresip",
        "-f",
        str(conf),
        "-4",
        "-n",
        source,
        "-t",
        str(seconds),
        "-e",
        f"/dial {uri}",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def finish(proc: asyncio.subprocess.Process) -> str:
    """Its output, once it has exited (killed if still running)."""
    if proc.returncode is None:
        proc.kill()
    return (await proc.communicate())[0].decode(errors="replace")
