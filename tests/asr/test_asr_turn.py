"""The end-of-turn decision: words that cannot end a turn, the wait it picks, and the Smart Turn
audio model's score on real speech (a recorded human voice) cut mid-phrase and at its end, at
16 kHz and through the telephone path (8 kHz G.711 back up to 16 kHz)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from phoneagent.asr.settings import AsrSettings
from phoneagent.asr.turn import TextState, TurnConfig, decide, text_state
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.settings import SettingsError, load

RATE = 16000


@pytest.mark.parametrize(
    "text",
    [
        "My number is",
        "My number is.",
        "I'd like to book an appointment for",
        "Can I come in on Tuesday and",
        "So, um",
        "I need the, uh",
        "Let me think,",
        "My phone number is 555",
        "My phone number is 555, 12",
        "The card is 4111 1111",
    ],
)
def test_unfinished_phrases_wait_longest(text: str) -> None:
    assert text_state(text) is TextState.UNFINISHED
    decision = decide(0.99, text_state(text), TurnConfig())
    assert decision.wait_s == pytest.approx(1.2) and not decision.likely_over


@pytest.mark.parametrize(
    "text",
    [
        "What time do you close today?",
        "Can I book a checkup for next week?",
        "My phone number is 555 123 4567.",
        "Thank you, that's all.",
        "Yes?",
    ],
)
def test_finished_phrases_answer_after_the_short_wait(text: str) -> None:
    assert text_state(text) is TextState.FINISHED
    decision = decide(0.9, text_state(text), TurnConfig())
    assert decision.wait_s == pytest.approx(0.2) and decision.likely_over


def test_audio_doubt_lengthens_the_wait_and_finished_words_shorten_it() -> None:
    cfg = TurnConfig()
    unsure = decide(0.1, TextState.UNKNOWN, cfg)
    unsure_finished = decide(0.1, TextState.FINISHED, cfg)
    sure = decide(0.8, TextState.UNKNOWN, cfg)
    assert sure.wait_s == pytest.approx(0.2) and sure.likely_over
    assert 0.2 < unsure_finished.wait_s < unsure.wait_s < 1.2
    assert not unsure.likely_over
    # no audio model: the words alone decide
    assert decide(None, TextState.FINISHED, cfg).wait_s == pytest.approx(0.2)
    assert decide(None, TextState.UNKNOWN, cfg).wait_s == pytest.approx(0.7)
    assert text_state("") is TextState.UNKNOWN and text_state("front left") is TextState.UNKNOWN
    assert text_state("Front.") is TextState.UNKNOWN  # Whisper's period after one word says nothing


def test_turn_settings_are_validated() -> None:
    with pytest.raises(InvalidArgument):
        TurnConfig(min_wait_ms=800, max_wait_ms=400).validate()
    with pytest.raises(InvalidArgument):
        TurnConfig(threshold=1.5).validate()
    with pytest.raises(SettingsError, match="PA_ASR_TURN_MIN_WAIT_MS"):
        load(AsrSettings, {"PA_ASR_TURN_MIN_WAIT_MS": "1500"})
    assert load(AsrSettings, {}).turn == "smart"
    assert load(AsrSettings, {"PA_ASR_TURN": "silence"}).turn == "silence"
    with pytest.raises(SettingsError, match="PA_ASR_TURN"):
        load(AsrSettings, {"PA_ASR_TURN": "psychic"})


@pytest.fixture(scope="module")
def smart_turn() -> Iterator[object]:
    from phoneagent.asr.turn_model import SmartTurn

    model = SmartTurn()
    model.load()
    yield model


def _trim(x: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(x) > 0.01)
    return x[loud[0] : loud[-1] + 160]


@pytest.mark.slow
@pytest.mark.parametrize("telephone", [False, True], ids=["16k", "g711"])
def test_model_scores_a_whole_phrase_above_one_cut_mid_phrase(
    smart_turn, human_voice: Callable[[str], np.ndarray], phone_line, telephone: bool
) -> None:  # type: ignore[no-untyped-def]
    """Two-word phrases of the recorded human voice ("front center"...): the whole phrase sounds
    finished; the same audio cut after its first word less so, also on telephone audio (where
    the model without the narrowband fill scored both alike)."""
    tail = np.zeros(RATE // 5, np.float32)  # the pause the decision is taken in
    whole, cut = [], []
    for name in ("Front_Center", "Front_Left", "Front_Right", "Side_Right"):
        audio = _trim(human_voice(name))
        if telephone:
            audio = phone_line(audio)
        whole.append(smart_turn.score(np.concatenate([audio, tail])))
        cut.append(smart_turn.score(np.concatenate([audio[: int(len(audio) * 0.45)], tail])))
    assert min(whole) >= 0.5, whole
    assert np.mean(whole) - np.mean(cut) >= 0.2, (whole, cut)
