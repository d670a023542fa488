"""pjsua2 peers for the tests: a real third-party SIP stack (PJSIP) run as a child process from a
script, since pjsua2 aborts its process if its objects outlive ``libDestroy()``. A peer script
prints ``PORT <n>`` once it listens (when it does) and ``RESULT <json>`` when it is done."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from typing import Any

import pytest

NEEDS_PJSUA2 = pytest.mark.skipif(
    importlib.util.find_spec("pjsua2") is None,
    reason="pjsua2 is not importable (pip install pjsua2-python==2.15.1)",
)

# The start of every pjsua2 peer script (a test's subprocess): one endpoint on the calling
# thread, quiet logs, no voice activity detection (audio flows in silence too), initialised.
PJSUA2_ENDPOINT = """ep = pj.Endpoint()
ep.libCreate()
cfg = pj.EpConfig()
cfg.uaConfig.threadCnt = 0
cfg.uaConfig.mainThreadOnly = True
cfg.logConfig.level = 0
cfg.logConfig.consoleLevel = 0
cfg.medConfig.noVad = True
ep.libInit(cfg)
"""
# Play a WAV file into a call's active audio and record what comes back (script code; the
# script keeps the player and recorder alive in its ``media`` list).
PJSUA2_MEDIA = """def start_media(call, play, record, options=0):
    info = call.getInfo()
    for i, m in enumerate(info.media):
        if m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
            audio = call.getAudioMedia(i)
            player, recorder = pj.AudioMediaPlayer(), pj.AudioMediaRecorder()
            player.createPlayer(play, options)
            recorder.createRecorder(record)
            player.startTransmit(audio)
            audio.startTransmit(recorder)
            media.extend([player, recorder])
"""
# A call that records its states and last status code in ``result`` and, once its audio is up,
# plays ``play`` into the call and records what it hears to ``record`` (script code; needs
# PJSUA2_MEDIA, and ``media``, ``play``, ``record`` and ``result`` defined by the script).
PJSUA2_CALL = """class Call(pj.Call):
    def onCallState(self, prm):
        info = self.getInfo()
        result["states"].append(info.stateText)
        result["status"] = info.lastStatusCode

    def onCallMediaState(self, prm):
        if not media:
            start_media(self, play, record)
"""
# Hang up every call still in ``calls`` when the script ends (script code).
PJSUA2_HANGUP_ALL = """for call in calls:
    try:
        call.hangup(pj.CallOpParam(True))
    except Exception:
        pass
"""
# Run pjlib's events until ``until()`` holds or ``seconds`` pass (script code).
PJSUA2_PUMP = """def pump(until, seconds):
    end = time.time() + seconds
    while time.time() < end and not until():
        ep.libHandleEvents(10)
"""


async def start_peer(script: str, *args: str, stdin: bool = False) -> asyncio.subprocess.Process:
    """Run a peer script in a child Python with its output piped (and its stdin, when asked)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        script,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def peer_port(proc: asyncio.subprocess.Process, timeout: float, what: str) -> int:
    """The port a peer printed once listening (pjlib prints a banner before its log settings apply);
    the peer is killed when it exits or stays silent first."""
    assert proc.stdout is not None and proc.stderr is not None
    try:
        line = ""
        while not line.startswith("PORT "):
            line = (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode()
            assert line, f"{what} exited: {(await proc.stderr.read()).decode()[-2000:]}"
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return int(line.split()[1])


async def peer_result(
    proc: asyncio.subprocess.Process, timeout: float, what: str, stdin: bytes | None = None
) -> dict[str, Any]:
    """Wait for the peer to finish (after writing ``stdin`` to it, if given) and read its RESULT
    line; the peer is killed when it hangs."""
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = [line for line in out.decode().splitlines() if line.startswith("RESULT ")]
    assert lines, f"{what} produced no result (rc={proc.returncode}): {err.decode()[-2000:]}"
    return dict(json.loads(lines[-1][len("RESULT ") :]))
