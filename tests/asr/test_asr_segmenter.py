"""Endpointing logic: onset, end of speech, pre-roll, partial cadence, length limit.

Timing tests drive the segmenter with a plain energy detector over synthetic tones so
every window boundary is known; the real Silero VAD is used in test_asr_vad.py and in the
pre-roll test below."""

from __future__ import annotations

import numpy as np
import pytest
from phoneagent.asr.segmenter import PartialDue, Segmenter, SegmenterConfig, SpeechStarted, Utterance
from phoneagent.asr.vad import SileroVad
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError

RATE = 16000
WIN = 512
WIN_S = WIN / RATE  # 32 ms


class EnergyDetector:
    """Speech when a window's RMS is above -40 dBFS."""

    window = WIN

    def __init__(self) -> None:
        self.resets = 0

    def probability(self, window: np.ndarray) -> float:
        return 1.0 if float(np.sqrt(np.mean(window**2))) > 0.01 else 0.0

    def reset(self) -> None:
        self.resets += 1


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(round(seconds * RATE))) / RATE
    return (0.3 * np.cos(2 * np.pi * 220 * t)).astype(np.float32)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(round(seconds * RATE)), dtype=np.float32)


def run(
    seg: Segmenter, audio: np.ndarray, *, frame_s: float = 0.02, t0: float = 100.0, partials: bool = False
) -> list[object]:
    """Feed ``audio`` in frames of ``frame_s``; PartialDue events are left out unless asked for."""
    n = int(round(frame_s * RATE))
    events: list[object] = []
    for i in range(0, len(audio), n):
        events.extend(seg.feed(audio[i : i + n], t0 + i / RATE))
    return [e for e in events if partials or not isinstance(e, PartialDue)]


def windows(n: int) -> float:
    return n * WIN_S


def test_onset_end_and_pre_roll_of_one_utterance() -> None:
    # Tone from window 32 to window 64, then silence.
    audio = np.concatenate([silence(windows(32)), tone(windows(32)), silence(1.0)])
    events = run(Segmenter(EnergyDetector()), audio)
    assert [type(e) for e in events] == [SpeechStarted, Utterance]
    started, utt = events
    assert isinstance(started, SpeechStarted) and isinstance(utt, Utterance)
    assert started.t == pytest.approx(100 + windows(32))
    assert started.detected_at == pytest.approx(100 + windows(36))  # 4 windows >= 120 ms
    assert utt.speech_start == pytest.approx(100 + windows(32))
    assert utt.speech_end == pytest.approx(100 + windows(64))
    assert utt.ended_at == pytest.approx(100 + windows(80))  # 16 windows >= 500 ms of silence
    assert not utt.forced
    # The audio starts 10 windows (320 ms >= 300 ms) before the onset and keeps 200 ms after the end.
    onset = int(np.flatnonzero(np.abs(utt.pcm) > 0)[0])
    assert onset == 10 * WIN
    assert len(utt.pcm) == pytest.approx(10 * WIN + 32 * WIN + 0.2 * RATE, abs=1)
    np.testing.assert_array_equal(utt.pcm[onset : onset + 32 * WIN], audio[32 * WIN : 64 * WIN])


def test_blip_shorter_than_min_speech_is_ignored() -> None:
    audio = np.concatenate([silence(windows(16)), tone(windows(3)), silence(1.0)])
    assert run(Segmenter(EnergyDetector()), audio) == []


def test_pause_shorter_than_trailing_silence_keeps_one_utterance() -> None:
    audio = np.concatenate([silence(0.5), tone(0.6), silence(0.3), tone(0.6), silence(1.0)])
    events = run(Segmenter(EnergyDetector()), audio)
    assert [type(e) for e in events] == [SpeechStarted, Utterance]
    utt = events[1]
    assert isinstance(utt, Utterance)
    assert utt.speech_end - utt.speech_start == pytest.approx(1.5, abs=2 * WIN_S)


def test_trailing_silence_is_configurable() -> None:
    audio = np.concatenate([silence(0.5), tone(0.6), silence(0.3), tone(0.6), silence(1.0)])
    seg = Segmenter(EnergyDetector(), SegmenterConfig(min_silence_ms=200))
    events = run(seg, audio)
    assert [type(e) for e in events] == [SpeechStarted, Utterance, SpeechStarted, Utterance]
    first = events[1]
    assert isinstance(first, Utterance)
    assert first.ended_at - first.speech_end == pytest.approx(windows(7))  # ceil(200 / 32)


@pytest.mark.parametrize("frame_s", [0.01, 0.03, 0.1])
def test_frame_size_does_not_change_events(frame_s: float) -> None:
    audio = np.concatenate([silence(0.7), tone(1.3), silence(0.9), tone(0.5), silence(1.0)])
    reference = run(Segmenter(EnergyDetector()), audio, frame_s=0.02)
    other = run(Segmenter(EnergyDetector()), audio, frame_s=frame_s)
    assert len(other) == len(reference) == 4
    for a, b in zip(reference, other, strict=True):
        assert type(a) is type(b)
        if isinstance(a, Utterance) and isinstance(b, Utterance):
            assert (a.speech_start, a.speech_end, a.ended_at) == pytest.approx(
                (b.speech_start, b.speech_end, b.ended_at)
            )
            np.testing.assert_array_equal(a.pcm, b.pcm)


def test_partials_every_interval_of_speech_with_a_bounded_window() -> None:
    cfg = SegmenterConfig(partial_interval_ms=600, partial_window_s=1.0)
    audio = np.concatenate([silence(windows(16)), tone(windows(94)), silence(1.0)])
    events = run(Segmenter(EnergyDetector(), cfg), audio, partials=True)
    partials = [e for e in events if isinstance(e, PartialDue)]
    assert len(partials) == 4  # 94 speech windows, one partial per 19 windows (>= 600 ms)
    gaps = np.diff([p.t for p in partials])
    assert gaps == pytest.approx([windows(19)] * 3)
    assert all(len(p.pcm) <= RATE for p in partials)
    assert isinstance(events[-1], Utterance)


def test_partials_can_be_switched_off() -> None:
    cfg = SegmenterConfig(partial_interval_ms=0)
    audio = np.concatenate([silence(0.5), tone(3.0), silence(1.0)])
    events = run(Segmenter(EnergyDetector(), cfg), audio, partials=True)
    assert [type(e) for e in events] == [SpeechStarted, Utterance]


def test_max_utterance_length_forces_contiguous_cuts() -> None:
    cfg = SegmenterConfig(max_utterance_s=2.0, partial_interval_ms=0)
    audio = np.concatenate([silence(0.5), tone(5.0), silence(1.0)])
    events = run(Segmenter(EnergyDetector(), cfg), audio)
    utts = [e for e in events if isinstance(e, Utterance)]
    assert sum(isinstance(e, SpeechStarted) for e in events) == 1
    assert [u.forced for u in utts] == [True, True, False]
    assert [u.continued for u in utts] == [True, True, False]
    assert all(len(u.pcm) <= 2.0 * RATE + 0.2 * RATE for u in utts)
    for a, b in zip(utts, utts[1:], strict=False):
        assert b.speech_start == pytest.approx(a.speech_end)
    total = sum(len(u.pcm) for u in utts)
    assert total >= 5.0 * RATE  # nothing of the speech was lost at the cuts


def test_flush_closes_open_speech_and_resets() -> None:
    detector = EnergyDetector()
    seg = Segmenter(detector)
    events = run(seg, np.concatenate([silence(0.5), tone(1.0)]))
    assert [type(e) for e in events] == [SpeechStarted]
    assert seg.in_speech
    flushed = seg.flush(200.0)
    assert len(flushed) == 1 and isinstance(flushed[0], Utterance) and flushed[0].forced
    assert not seg.in_speech and detector.resets >= 2
    assert seg.flush(201.0) == []


def test_same_input_gives_same_events() -> None:
    audio = np.concatenate([silence(0.3), tone(0.9), silence(0.8), tone(0.4), silence(0.8)])
    a = run(Segmenter(EnergyDetector()), audio)
    b = run(Segmenter(EnergyDetector()), audio)
    assert [(type(e), getattr(e, "t", None), getattr(e, "speech_end", None)) for e in a] == [
        (type(e), getattr(e, "t", None), getattr(e, "speech_end", None)) for e in b
    ]


@pytest.mark.parametrize(
    "cfg",
    [
        SegmenterConfig(start_threshold=0.3, end_threshold=0.5),
        SegmenterConfig(min_silence_ms=-1),
        SegmenterConfig(max_utterance_s=0.5),
        SegmenterConfig(partial_window_s=0),
    ],
)
def test_bad_config_is_rejected(cfg: SegmenterConfig) -> None:
    with pytest.raises(PhoneAgentError) as err:
        Segmenter(EnergyDetector(), cfg)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT


def test_non_float_frames_are_rejected() -> None:
    seg = Segmenter(EnergyDetector())
    with pytest.raises(PhoneAgentError):
        seg.feed(np.zeros(320, dtype=np.int16), 0.0)
    with pytest.raises(PhoneAgentError):
        seg.feed(np.zeros((320, 2), dtype=np.float32), 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("lead_s", [0.0, 1.0])
def test_pre_roll_keeps_the_first_word(lead_s: float, speak, tiny_engine) -> None:  # type: ignore[no-untyped-def]
    speech = speak("Please cancel my order")
    audio = np.concatenate([silence(lead_s), speech, silence(1.0)])
    events = run(Segmenter(SileroVad()), audio, t0=0.0)
    utts = [e for e in events if isinstance(e, Utterance)]
    assert len(utts) == 1
    utt = utts[0]
    if lead_s:
        # the cut audio begins >= 300 ms before the detected onset (or at the start of the stream)
        assert utt.speech_start - lead_s < 0.15
        assert len(utt.pcm) / RATE >= utt.speech_end - utt.speech_start + 0.3
    text = tiny_engine.transcribe(utt.pcm).text.lower()
    assert text.startswith("please cancel"), text
