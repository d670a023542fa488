"""Answering-machine detection on synthetic telephone audio (8 kHz, 20 ms frames)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from phoneagent.edge.amd import AmdConfig, AmdDecision, AmdOutcome, AnsweringMachineDetector
from phoneagent.runtime.errors import InvalidArgument

RATE = 8000
FRAME = 160


def noise(seconds: float, rng: np.random.Generator, level: float = 30.0) -> npt.NDArray[np.float64]:
    return rng.normal(0.0, level, int(seconds * RATE))


def speech(seconds: float, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Voiced speech stand-in: a wandering pitch with many harmonics and a syllable rhythm."""
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = 140.0 + 30.0 * np.sin(2 * np.pi * 1.3 * t) + 10.0 * np.sin(2 * np.pi * 5.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voiced = sum(np.sin(k * phase) / (1 + abs(k - 4)) for k in range(1, 20))
    syllables = 0.55 + 0.45 * np.abs(np.sin(2 * np.pi * 2.5 * t))
    return 2500.0 * voiced * syllables + noise(seconds, rng)


def tone(seconds: float, hz: float, amplitude: float = 8000.0) -> npt.NDArray[np.float64]:
    t = np.arange(int(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * hz * t)


def run(signal: npt.NDArray[np.float64], config: AmdConfig | None = None) -> list[AmdDecision]:
    det = AnsweringMachineDetector(config)
    pcm = np.clip(signal, -32768, 32767).astype(np.int16)
    out = []
    for start in range(0, len(pcm) - FRAME + 1, FRAME):
        decision = det.process(pcm[start : start + FRAME])
        if decision is not None:
            out.append(decision)
    return out


def test_short_hello_then_silence_is_human() -> None:
    rng = np.random.default_rng(1)
    decisions = run(np.concatenate([noise(0.4, rng), speech(0.7, rng), noise(3.0, rng)]))
    assert [d.outcome for d in decisions] == [AmdOutcome.HUMAN]
    d = decisions[0]
    assert d.ready and d.reason == "short greeting"
    assert 1900 <= d.at_ms <= 2400  # end of "hello" (1.1 s) + hangover + 0.8 s of silence


def test_long_greeting_with_gaps_then_beep_is_machine_with_beep_time() -> None:
    rng = np.random.default_rng(2)
    parts = [noise(0.3, rng)]
    for _ in range(4):  # four phrases of ~0.9 s with 0.15 s breaths: about 4 s of greeting
        parts += [speech(0.9, rng), noise(0.15, rng)]
    lead = sum(len(p) for p in parts) / RATE
    parts += [noise(0.4, rng), tone(0.5, 1000.0) + noise(0.5, rng), noise(2.0, rng)]
    decisions = run(np.concatenate(parts))
    assert [(d.outcome, d.ready) for d in decisions] == [
        (AmdOutcome.MACHINE, False),
        (AmdOutcome.MACHINE, True),
    ]
    first, final = decisions
    assert first.reason == "long greeting" and 2700 <= first.at_ms <= 3400
    assert final.reason == "beep" and final.beep_at_ms is not None
    beep_start = (lead + 0.4) * 1000
    assert abs(final.beep_at_ms - beep_start) <= 40
    assert final.at_ms >= beep_start + 150


def test_long_greeting_without_beep_ends_after_silence() -> None:
    rng = np.random.default_rng(3)
    decisions = run(np.concatenate([noise(0.3, rng), speech(3.5, rng), noise(3.0, rng)]))
    assert [d.reason for d in decisions] == ["long greeting", "greeting ended"]
    assert decisions[-1].beep_at_ms is None


def test_silence_is_unknown_at_timeout() -> None:
    rng = np.random.default_rng(4)
    decisions = run(noise(8.0, rng), AmdConfig(timeout_ms=5000))
    assert len(decisions) == 1
    assert decisions[0].outcome is AmdOutcome.UNKNOWN and decisions[0].reason == "no speech"
    assert decisions[0].at_ms == 5000


def test_tone_outside_band_is_not_a_beep() -> None:
    rng = np.random.default_rng(5)
    decisions = run(np.concatenate([noise(0.4, rng), tone(0.5, 400.0), noise(3.0, rng)]))
    assert all(d.reason != "beep" for d in decisions)


def test_bad_frames_and_config_are_rejected() -> None:
    det = AnsweringMachineDetector()
    with pytest.raises(InvalidArgument):
        det.process(np.zeros(100, np.int16))
    with pytest.raises(InvalidArgument):
        AmdConfig(beep_high_hz=5000.0)
