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
# The OpenSSL 1.0.2 the wheel bundles never fills its digest table, so PJSIP reports MD5 and
# SHA-256 as unsupported and cannot answer a digest challenge: fill it (script code, first).
PJSUA2_DIGESTS = """import ctypes, glob, os
for lib in glob.glob(os.path.join(os.path.dirname(pj.__file__), "..", "pjsua2_python.libs", "libcrypto*")):
    ctypes.CDLL(lib).OpenSSL_add_all_digests()
"""
# Start the library with the null sound device: calls get their own audio media (script code).
PJSUA2_START = """ep.libStart()
ep.audDevManager().setNullDev()
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
# A call that records its states and last status code in ``result`` and sets ``result["media"]``
# once its audio is up (script code; ``result`` defined by the script).
PJSUA2_MEDIA_CALL = """class Call(pj.Call):
    def onCallState(self, prm):
        info = self.getInfo()
        result["states"].append(info.stateText)
        result["status"] = info.lastStatusCode

    def onCallMediaState(self, prm):
        info = self.getInfo()  # keep the info alive while reading its media list
        for media in info.media:
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                result["media"] = True
"""
# Place a call from an account on ``bound`` (its SIP identity and its RTP) to ``target``, SRTP
# used as ``srtp_use`` says (a PJMEDIA_SRTP_* value; None: pjsua2's default) with
# ``secure_signaling`` (1: keys only over TLS); returns the account and the call (script code;
# needs a ``Call`` class).
PJSUA2_DIAL = """def dial(target, bound="127.0.0.1", srtp_use=None, secure_signaling=0):
    acfg = pj.AccountConfig()
    acfg.idUri = "sip:pjsua@" + bound
    acfg.mediaConfig.transportConfig.boundAddress = bound  # RTP on loopback like the edge
    if srtp_use is not None:
        acfg.mediaConfig.srtpUse = srtp_use
        acfg.mediaConfig.srtpSecureSignaling = secure_signaling
    acc = pj.Account()
    acc.create(acfg)
    call = Call(acc)
    call.makeCall(target, pj.CallOpParam(True))
    return acc, call
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
# Wait until ``call`` is confirmed (or over); once confirmed, hold it ``hold_s`` seconds and hang
# up (None: leave that to the other side); then wait until it is over (script code; needs
# PJSUA2_PUMP and a ``result`` whose "states" the call fills).
PJSUA2_HOLD = """def hold_then_hang_up(call, hold_s):
    pump(lambda: "CONFIRMED" in result["states"] or "DISCONNECTED" in result["states"], 8)
    if hold_s is not None and "CONFIRMED" in result["states"]:
        pump(lambda: False, hold_s)
        call.hangup(pj.CallOpParam(True))
    pump(lambda: "DISCONNECTED" in result["states"], 8)
"""
# The end of a script, once it has dropped its calls and media: close the account ``acc`` and
# the library, print the result (script code).
PJSUA2_FINISH = """acc.shutdown()
del acc
ep.libDestroy()
del ep
print("RESULT " + json.dumps(result), flush=True)
"""

# After a script's transports: start the library and define a phone that dials, plays ``play``
# into its call and records to ``record`` (``media`` keeps them), and ``pump`` (script code;
# needs ``result``, ``play`` and ``record`` defined by the script).
PJSUA2_PHONE = PJSUA2_START + "media = []\n" + PJSUA2_MEDIA + PJSUA2_CALL + PJSUA2_DIAL + PJSUA2_PUMP


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
