"""faster-whisper decodes a phone turn in a window shorter than Whisper's 30 s (the encoder reads
the turn plus silence, not 30 s), with the same words and no looping on the turn's words."""

from __future__ import annotations

import numpy as np
import pytest
from phoneagent.asr.engines.base import create_engine, engine_options
from phoneagent.asr.engines.faster_whisper import DEFAULT_WINDOW_S, NATIVE_WINDOW_S
from phoneagent.asr.settings import AsrSettings
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.settings import SettingsError, load

RATE = 16000


def test_the_window_holds_the_turn_and_ten_seconds_of_silence_after_it() -> None:
    engine = create_engine("faster-whisper", window_s=15)
    assert engine.short_window
    assert engine.window_frames(3 * RATE) == 1500  # a 3 s question: the 15 s window
    assert engine.window_frames(0) == 1500
    assert engine.window_frames(int(7.2 * RATE)) == 1800  # 7.2 s + 10 s of silence, whole seconds
    assert engine.window_frames(25 * RATE) == NATIVE_WINDOW_S * 100  # never past Whisper's own


def test_the_setting_chooses_the_window_and_30_is_whispers_own_path() -> None:
    assert load(AsrSettings, {}).window_s == DEFAULT_WINDOW_S
    settings = load(AsrSettings, {"PA_ASR_WINDOW_S": "20"})
    assert create_engine("faster-whisper", **engine_options("faster-whisper", settings)).window_s == 20
    native = create_engine("faster-whisper", window_s=NATIVE_WINDOW_S)
    assert not native.short_window
    words = create_engine("faster-whisper", word_timestamps=True)
    assert not words.short_window  # word times come from faster-whisper's own path
    multilingual = create_engine("faster-whisper", model="base")
    assert not multilingual.short_window  # the language is detected on the full window


@pytest.mark.parametrize("value", ["0", "-1", "31"])
def test_a_window_outside_whispers_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="PA_ASR_WINDOW_S"):
        load(AsrSettings, {"PA_ASR_WINDOW_S": value})
    with pytest.raises(InvalidArgument):
        create_engine("faster-whisper", window_s=float(value))


@pytest.mark.slow
def test_a_short_window_hears_the_same_words(wer) -> None:  # type: ignore[no-untyped-def]
    from phoneagent.devtools.asr_bench import synthesize

    short = create_engine("faster-whisper", cpu_threads=1)
    native = create_engine("faster-whisper", cpu_threads=1, window_s=NATIVE_WINDOW_S)
    short.load()
    native.load()
    # the first two loop ("... on Saturday? What are your opening hours on Saturday? What ...")
    # in a 4 s window; the default leaves them room
    sentences = [
        "What are your opening hours on Saturday?",
        "Can I speak to someone about my bill please?",
        "I would like to book a cleaning next Tuesday morning.",
    ]
    clips = [u.pcm for u in synthesize(sentences)]  # Piper over 8 kHz G.711
    # a long turn: the three with pauses, where a window without room after it loops
    clips.append(np.concatenate([np.concatenate([c, np.zeros(RATE // 2, np.float32)]) for c in clips]))
    refs = [*sentences, " ".join(sentences)]
    try:
        got_short = [short.transcribe(c) for c in clips]
        got_native = [native.transcribe(c) for c in clips]
    finally:
        short.close()
        native.close()
    w_short = wer(list(zip(refs, (r.text for r in got_short), strict=True)))
    w_native = wer(list(zip(refs, (r.text for r in got_native), strict=True)))
    print(f"\nWER short window {w_short:.3f}, 30 s window {w_native:.3f}", [r.text for r in got_short])
    assert w_short <= w_native + 0.05 and w_short <= 0.15
    for ref, result in zip(refs, got_short, strict=True):
        assert len(result.text) < 1.5 * len(ref) + 10, result.text  # no repeated phrases
    assert short.window_frames(len(clips[0])) == DEFAULT_WINDOW_S * 100  # not 30 s


def test_silence_alone_decodes_to_no_words(tiny_engine_short) -> None:  # type: ignore[no-untyped-def]
    result = tiny_engine_short.transcribe(np.zeros(RATE, np.float32))
    assert result.text == "" and result.no_speech_prob == 1.0


@pytest.fixture(scope="module")
def tiny_engine_short():  # type: ignore[no-untyped-def]
    engine = create_engine("faster-whisper", cpu_threads=1, window_s=DEFAULT_WINDOW_S)
    engine.load()
    yield engine
    engine.close()


@pytest.mark.slow
def test_a_decode_that_repeats_itself_is_decoded_again_in_the_full_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from phoneagent.asr.engines import faster_whisper
    from phoneagent.devtools.asr_bench import synthesize

    # a 4 s window with no room after the turn: tiny.en loops on this question ("... on Saturday?
    # What are your opening hours on Saturday? What ..."), as it did on noisy turns at 15 s
    monkeypatch.setattr(faster_whisper, "WINDOW_PAD_S", 1)
    engine = create_engine("faster-whisper", cpu_threads=1, window_s=3)
    engine.load()
    try:
        (utterance,) = synthesize(["What are your opening hours on Saturday?"])
        assert engine.window_frames(len(utterance.pcm)) <= 400
        result = engine.transcribe(utterance.pcm)
    finally:
        engine.close()
    assert result.text == "What are your opening hours on Saturday?"
    assert engine.window_redecodes == 1
