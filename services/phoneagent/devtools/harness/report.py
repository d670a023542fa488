"""After a call: the stereo recording, the agent transcript and the printed conversation."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from phoneagent.devtools.harness.caller import AgentTurn, CallResult
from phoneagent.devtools.harness.checks import CheckResult
from phoneagent.devtools.harness.voice import AgentTranscriber, agent_segments

RATE = 8000


def write_stereo_wav(path: Path, left: np.ndarray, right: np.ndarray, rate: int = RATE) -> Path:
    """16-bit stereo WAV: ``left`` (the caller) and ``right`` (the agent), padded to equal length."""
    n = max(len(left), len(right))
    frames = np.zeros((n, 2), dtype="<i2")
    frames[: len(left), 0] = left
    frames[: len(right), 1] = right
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())
    return path


def transcribe_agent(result: CallResult, transcriber: AgentTranscriber) -> None:
    """Split the received agent audio at silences and transcribe each part (blocking)."""
    result.agent_turns = []
    for start, end in agent_segments(result.agent_pcm):
        text = transcriber.transcribe(result.agent_pcm[start:end])
        result.agent_turns.append(AgentTurn(start / RATE, end / RATE, text))


def conversation(result: CallResult) -> list[tuple[float, str, str]]:
    """(seconds from media start, speaker, text with timing) in time order."""
    rows: list[tuple[float, str, str]] = []
    for u in result.utterances:
        at = u.start_mono - result.media_start_mono
        note = []
        if u.barge_in:
            note.append(
                "barge-in"
                + (
                    f", agent stopped after {u.barge_stop_ms:.0f} ms"
                    if u.barge_stop_ms is not None
                    else ", agent did not stop"
                )
            )
        if u.reply_latency_ms is not None:
            note.append(f"first agent audio {u.reply_latency_ms:.0f} ms after caller stopped")
        rows.append((at, "caller", u.text + (f"   [{'; '.join(note)}]" if note else "")))
    for t in result.agent_turns:
        rows.append((t.start_s, "agent", t.text or "(unintelligible)"))
    return sorted(rows, key=lambda r: r[0])


def render(result: CallResult, checks: list[CheckResult], wav: Path | None) -> str:
    lines = [f"scenario {result.scenario.name}: call ended by {result.ended_by or 'nobody'}"]
    for at, who, text in conversation(result):
        lines.append(f"  {at:7.2f}s  {who:<6} {text}")
    for note in result.notes:
        lines.append(f"  note: {note}")
    if result.impair.packets and (result.impair.dropped or result.impair.delays_s):
        lines.append(f"  impairments: {result.impair.dropped}/{result.impair.packets} packets dropped")
    for c in checks:
        lines.append(f"  [{'PASS' if c.passed else 'FAIL'}] {c.expectation.describe()}: {c.detail}")
    if wav is not None:
        lines.append(f"  recording (left caller, right agent): {wav}")
    return "\n".join(lines)


def write_transcript(path: Path, result: CallResult) -> Path:
    path.write_text(
        "".join(f"{at:.2f}\t{who}\t{text}\n" for at, who, text in conversation(result)), encoding="utf-8"
    )
    return path
