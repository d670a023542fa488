"""ASR service settings (environment variables, validated at start)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from phoneagent.asr.engines.base import engine_names
from phoneagent.asr.engines.faster_whisper import DEFAULT_WINDOW_S, NATIVE_WINDOW_S
from phoneagent.asr.turn import TurnConfig
from phoneagent.runtime.settings import env, non_negative, positive

MAX_BATCH_SIZE = 64
TURN_MODES = ("smart", "silence")
TURN_PROBE_MS = TurnConfig.probe_ms  # silence after which a pause is judged


def _batch_size(value: int) -> str | None:
    return None if 1 <= value <= MAX_BATCH_SIZE else f"must be between 1 and {MAX_BATCH_SIZE}"


def _turn_mode(value: str) -> str | None:
    return None if value in TURN_MODES else f"must be {' or '.join(TURN_MODES)}"


def _fraction(value: float) -> str | None:
    return None if 0.0 < value < 1.0 else "must be between 0 and 1"


def _window(value: float) -> str | None:
    ok = 0.0 < value <= NATIVE_WINDOW_S
    return None if ok else f"must be above 0 and at most {NATIVE_WINDOW_S} (Whisper's own window)"


def _align_dir(value: str) -> str | None:
    if value and not (Path(value) / "config.json").is_file():
        return "must be a local wav2vec2 model directory with a config.json (nothing is downloaded)"
    return None


@dataclasses.dataclass(frozen=True)
class AsrSettings:
    engine: str = env("PA_ASR_ENGINE", "faster-whisper", doc="faster-whisper (CPU) or whisperx (GPU)")
    model: str = env("PA_ASR_MODEL", "tiny.en", doc="tiny.en or base (registry packages)")
    device: str = env("PA_ASR_DEVICE", "cpu", doc="cpu or cuda")
    threads: int = env(
        "PA_ASR_THREADS",
        2,
        check=positive,
        doc="CPU threads per decode (2: the final after a caller stops decodes in ~0.42 s instead of ~0.69 s "
        "on the 2-core bench machine)",
    )
    pre_roll_ms: int = env(
        "PA_ASR_PRE_ROLL_MS", 300, check=non_negative, doc="Audio kept before speech onset"
    )
    min_speech_ms: int = env(
        "PA_ASR_MIN_SPEECH_MS", 120, check=non_negative, doc="Speech needed before 'caller started speaking'"
    )
    end_silence_ms: int = env(
        "PA_ASR_END_SILENCE_MS",
        500,
        check=positive,
        doc="Trailing silence that ends an utterance (PA_ASR_TURN=silence)",
    )
    turn: str = env(
        "PA_ASR_TURN",
        "smart",
        check=_turn_mode,
        doc="End of turn: smart (Smart Turn audio model + words + adaptive silence) or silence (fixed)",
    )
    turn_min_wait_ms: int = env(
        "PA_ASR_TURN_MIN_WAIT_MS", 200, check=positive, doc="smart: silence after a clearly finished turn"
    )
    turn_max_wait_ms: int = env(
        "PA_ASR_TURN_MAX_WAIT_MS",
        1200,
        check=positive,
        doc="smart: silence after an unfinished turn ('my number is', 'and', 'um'); the longest wait",
    )
    turn_threshold: float = env(
        "PA_ASR_TURN_THRESHOLD",
        0.5,
        check=_fraction,
        doc="smart: audio model score at or above which a pause sounds like a finished turn",
    )
    vad_reset_ms: int = env(
        "PA_ASR_VAD_RESET_MS",
        1000,
        check=non_negative,
        doc="Non-speech after which the VAD state is reset, so it hears the next words at once (0: never)",
    )
    onset_lookback_ms: int = env(
        "PA_ASR_ONSET_LOOKBACK_MS",
        320,
        check=non_negative,
        doc="How far a confirmed speech onset moves back to where the VAD first rose (soft first syllables)",
    )
    partials: bool = env(
        "PA_ASR_PARTIALS",
        True,
        doc="Publish partial transcripts while the caller speaks (skipped whenever the engine is busy)",
    )
    partial_interval_ms: int = env(
        "PA_ASR_PARTIAL_INTERVAL_MS", 600, check=positive, doc="Speech between partials"
    )
    max_utterance_s: float = env("PA_ASR_MAX_UTTERANCE_S", 20.0, check=positive, doc="Forced cut")
    initial_prompt: str = env("PA_ASR_PROMPT", "", doc="Domain words to bias recognition")
    lead_in_ms: int = env(
        "PA_ASR_LEAD_IN_MS",
        0,
        check=non_negative,
        doc="faster-whisper: silence put before a final's audio, so its first word is kept (0: none)",
    )
    window_s: float = env(
        "PA_ASR_WINDOW_S",
        float(DEFAULT_WINDOW_S),
        check=_window,
        doc="faster-whisper: seconds of audio the encoder reads per decode, the turn padded with "
        "silence (a longer turn: to 10 s past its end); 30 is Whisper's own window. 15 decodes a "
        "phone turn ~3x faster than 30 with the same word error rate (README, 'Measured numbers')",
    )
    beam_size: int = env(
        "PA_ASR_BEAM_SIZE", 1, check=positive, doc="faster-whisper: beam width of finals (partials: greedy)"
    )
    batch_size: int = env(
        "PA_ASR_BATCH_SIZE", 8, check=_batch_size, doc="whisperx: utterances decoded in one batched pass"
    )
    align_model_dir: str = env(
        "PA_ASR_ALIGN_MODEL_DIR",
        "",
        check=_align_dir,
        doc="whisperx: local wav2vec2 alignment model directory for word times (empty: no alignment)",
    )

    def validate(self) -> list[str]:
        if self.engine not in engine_names():
            return [f"PA_ASR_ENGINE={self.engine!r}: must be {' or '.join(engine_names())}"]
        if self.align_model_dir and self.engine != "whisperx":
            return ["PA_ASR_ALIGN_MODEL_DIR: word alignment needs PA_ASR_ENGINE=whisperx"]
        if self.turn_min_wait_ms > self.turn_max_wait_ms:
            return ["PA_ASR_TURN_MIN_WAIT_MS: must not exceed PA_ASR_TURN_MAX_WAIT_MS"]
        if self.turn_min_wait_ms < TURN_PROBE_MS:
            return [f"PA_ASR_TURN_MIN_WAIT_MS: must be at least {TURN_PROBE_MS}"]
        return []

    def turn_config(self) -> TurnConfig:
        return TurnConfig(
            min_wait_ms=self.turn_min_wait_ms,
            max_wait_ms=self.turn_max_wait_ms,
            threshold=self.turn_threshold,
            probe_ms=TURN_PROBE_MS,
        )
