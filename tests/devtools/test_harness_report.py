"""The stereo recording (left caller, right agent), agent segmentation and expectation checks."""

from __future__ import annotations

import wave
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from phoneagent.devtools.harness import checks
from phoneagent.devtools.harness.caller import AgentTurn, CallResult
from phoneagent.devtools.harness.checks import check_all, first_words_contain, mentions
from phoneagent.devtools.harness.report import write_stereo_wav
from phoneagent.devtools.harness.scenario import parse_scenario
from phoneagent.devtools.harness.voice import agent_segments


def test_stereo_wav_left_is_caller(tmp_path: Path) -> None:
    caller = np.full(800, 1000, np.int16)
    agent = np.full(1200, -2000, np.int16)
    path = write_stereo_wav(tmp_path / "x" / "call.wav", caller, agent)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (2, 2, 8000, 1200)
        frames = np.frombuffer(w.readframes(1200), "<i2").reshape(-1, 2)
    assert (frames[:800, 0] == 1000).all() and (frames[800:, 0] == 0).all()
    assert (frames[:, 1] == -2000).all()


def test_agent_segments_split_at_silence() -> None:
    loud = (3000 * np.sin(np.arange(8000) * 0.3)).astype(np.int16)
    track = np.concatenate([np.zeros(1600, np.int16), loud, np.zeros(8000, np.int16), loud[:4000]])
    segs = agent_segments(track)
    assert len(segs) == 2
    assert segs[0][0] == 1600 and abs(segs[0][1] - 9600) <= 160
    assert segs[1][0] == 17600


def test_text_checks() -> None:
    assert first_words_contain("Hi, you are speaking with an A.I. assistant.", "AI")
    assert first_words_contain("You are speaking with an AI assistant", "ai")
    assert not first_words_contain("Please wait, I said so", "AI")
    assert not first_words_contain(" ".join(["word"] * 20) + " AI", "AI")
    assert mentions("We open at 9 a.m. on Monday", "9")
    assert mentions("we open at nine on monday", "9|nine") and not mentions("we open at ten", "9|nine")


def test_checks_against_a_result() -> None:
    sc = parse_scenario(
        {
            "name": "t",
            "steps": ["hangup"],
            "expect": [
                {"disclosure": "AI"},
                {"mentions": "closed"},
                {"ended_by_agent": True},
                {"transfer_requested": True},
            ],
        }
    )
    res = CallResult(sc, "+14155550100", ended_by="caller")
    res.agent_turns = [
        AgentTurn(0, 2, "You are speaking with an AI assistant."),
        AgentTurn(3, 5, "We are closed on Saturdays."),
    ]
    res.refer_targets = ["sip:frontdesk@example.com"]
    got = {c.expectation.kind: c.passed for c in check_all(res, None)}
    assert got == {"disclosure": True, "mentions": True, "ended_by_agent": False, "transfer_requested": True}


def _agent_file(tmp_path: Path, transfer_hours: str) -> Path:
    """The bundled agent with its transfer line's hours set to ``transfer_hours``."""
    import yaml
    from phoneagent.agents import example_agent_path

    source = example_agent_path()
    raw = yaml.safe_load(source.read_text())
    raw["transfer"]["hours"] = transfer_hours
    raw["knowledge"] = [str(source.parent / k) for k in raw.get("knowledge", [])]
    path = tmp_path / f"agent-{transfer_hours}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_escalated_means_a_transfer_while_staffed_and_a_message_offer_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sc = parse_scenario({"name": "t", "steps": ["hangup"], "expect": [{"escalated": True}]})
    transferred = CallResult(sc, "+14155550100", refer_targets=["sip:frontdesk@example.com"])
    transferred.agent_turns = [AgentTurn(0, 2, "I'll put you through now.")]
    message = CallResult(sc, "+14155550100")
    message.agent_turns = [AgentTurn(0, 2, "Nobody is available right now. I can take a message.")]
    silent = CallResult(sc, "+14155550100")
    silent.agent_turns = [AgentTurn(0, 2, "Goodbye.")]

    monkeypatch.setenv("PA_AGENT_FILE", str(_agent_file(tmp_path, "always")))
    assert [check_all(r, None)[0].passed for r in (transferred, message, silent)] == [True, False, False]

    # A transfer line that keeps business hours, checked at a moment the bundled agent is
    # closed: a Sunday (no hours on Sundays).
    monkeypatch.setenv("PA_AGENT_FILE", str(_agent_file(tmp_path, "business")))
    sunday = datetime(2026, 11, 29, 15, 0, tzinfo=UTC)
    monkeypatch.setattr(checks, "datetime", _FixedNow(sunday))
    assert [check_all(r, None)[0].passed for r in (transferred, message, silent)] == [False, True, False]


class _FixedNow:
    """Stands in for ``datetime`` in the checks module: ``now()`` is a fixed moment."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self, tz: Any = None) -> datetime:
        return self.moment
