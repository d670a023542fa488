"""Debian's baresip driven non-interactively, as a caller or a callee: its microphone is a WAV
file (aufile); as a caller it dials one URI at start (``-e /dial``), as a callee it auto-answers
its account's user; either way it quits after ``seconds`` (``-t``)."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
from phoneagent.devtools.harness.demo import free_udp_port

from support.sip_phone import read_wav

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
    user: str = "baresip",
    sip_port: int = 0,
) -> Path:
    """A config folder: ``modules`` (codecs, srtp, sndfile: loaded before the others), the WAV
    as microphone, SIP on 127.0.0.1 (``sip_port``, or a free port), one account for ``user``
    with ``account``'s parameters."""
    conf.mkdir()
    lines = [
        f"module_path {MODULES}",
        *(f"module {m}.so" for m in modules),
        "module aufile.so",
        "module account.so",
        "module menu.so",
        f"sip_listen 127.0.0.1:{sip_port or free_udp_port()}",
        f"audio_source aufile,{wav}",
        "audio_player aufile,/dev/null",
        "audio_alert aufile,/dev/null",
        f"rtp_ports {rtp_ports}",
        "call_max_calls 1",
        *extra,
    ]
    (conf / "config").write_text("\n".join(lines) + "\n")
    (conf / "accounts").write_text(f"<sip:{user}@127.0.0.1>;regint=0;{account}\n")
    return conf


def decoded(folder: Path) -> tuple[np.ndarray, int]:
    """What baresip decoded (its first channel) and the rate: the WAV its ``sndfile`` module
    dumped in ``folder`` (``snd_path``)."""
    (dump,) = [p for p in folder.glob("dump-*.wav") if p.stem.endswith("-dec")]
    return read_wav(dump)


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


async def answer(conf: Path, seconds: int, *flags: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    """baresip with ``conf`` waiting for calls (its account needs ``answermode=auto``; it answers
    only its own user, 404 otherwise), once it says it is ready; it exits after ``seconds``.
    ``flags``: more options (``-s`` traces SIP). Returns the process and the lines it printed
    up to ready; a baresip that exits or is not ready within 15 s fails the test."""
    proc = await asyncio.create_subprocess_exec(
        "baresip",
        "-f",
        str(conf),
        "-4",
        "-n",
        "127.0.0.1",
        "-t",
        str(seconds),
        *flags,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        while not seen or "baresip is ready." not in seen[-1]:
            line = (await asyncio.wait_for(proc.stdout.readline(), 15)).decode(errors="replace")
            assert line, "baresip exited: " + "".join(seen)[-2000:]
            seen.append(line)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc, seen


async def finish(proc: asyncio.subprocess.Process) -> str:
    """Its output, once it has exited (killed if still running)."""
    if proc.returncode is None:
        proc.kill()
    return (await proc.communicate())[0].decode(errors="replace")
