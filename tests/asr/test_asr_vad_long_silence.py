"""Speech after a long silence is heard from its first syllable (issue 16).

Silero's recurrent state drifts while it hears nothing: after the ~8 s of silence a caller
spends listening to the agent's greeting, its probability for the caller's next words stayed
under the start threshold for half a second or more, so the onset came late and the decoded
audio began after the first word ("dentist." for "Who is the children's dentist?"). The
segmenter now resets the detector's state after each second of non-speech."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from phoneagent.asr.segmenter import Segmenter, SegmenterConfig, SpeechStarted, Utterance
from phoneagent.asr.vad import SileroVad
from phoneagent.devtools.asr_bench import synthesize

RATE = 16000
pytestmark = pytest.mark.slow


def first_loud(pcm: np.ndarray) -> int:
    return int(np.flatnonzero(np.abs(pcm) > 0.01)[0])


@pytest.fixture(scope="module")
def question() -> np.ndarray:
    """A neural voice (Piper) asking; tiny.en hears all of it when decoded offline."""
    return synthesize(["Who is the children's dentist?"], phone=False)[0].pcm


@pytest.mark.parametrize("silence_s", [10.0, 30.0])
def test_the_first_words_after_a_long_silence_are_in_the_utterance(
    question: np.ndarray,
    phone_line: Callable[[np.ndarray], np.ndarray],
    tiny_engine: object,
    silence_s: float,
) -> None:
    speech = question
    audio = phone_line(
        np.concatenate([np.zeros(int(silence_s * RATE), np.float32), speech, np.zeros(RATE, np.float32)])
    )
    onset = int(silence_s * RATE) + first_loud(speech)
    seg = Segmenter(SileroVad(), SegmenterConfig())
    events = []
    for i in range(0, len(audio), 320):
        events += seg.feed(audio[i : i + 320].astype(np.float32), i / RATE)
    started = next(e for e in events if isinstance(e, SpeechStarted))
    utt = next(e for e in events if isinstance(e, Utterance))
    assert started.t * RATE - onset < 0.15 * RATE  # heard within 150 ms of the first sound
    assert utt.start_sample <= onset
    text = tiny_engine.transcribe(utt.pcm).text.lower()  # type: ignore[attr-defined]
    assert text.startswith("who")
