"""CPU speech recognition with faster-whisper (CTranslate2), the default engine.

Tuned for phone turns that are already endpointed by our own VAD: int8 weights, no VAD
inside, no conditioning on earlier text, and English forced for ``*.en`` checkpoints.
Partial transcripts decode greedily; finals use ``beam_size`` (default 1, greedy) and
start after ``lead_in_ms`` of silence (default 0). Both are off by default: in the onset
replay (``python -m phoneagent.devtools.onset_bench --segmenter-only``; README, "Speech
onsets") neither a lead-in, a wider beam, an initial prompt nor the base model kept more
first words in both clean and noisy conditions. Word times are given relative to the audio
passed in, without the lead-in. Install with the ``asr`` extra.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from phoneagent.asr.engines.base import BaseAsrEngine, TranscriptResult, Word, audio_seconds
from phoneagent.asr.models import TINY_EN, is_english_only, resolve_model
from phoneagent.runtime.errors import EngineFailure, InvalidArgument
from phoneagent.runtime.metrics import ASR_WINDOW_REDECODES
from phoneagent.runtime.modelfiles import MissingModelError

if TYPE_CHECKING:
    from phoneagent.asr.settings import AsrSettings

log = logging.getLogger(__name__)

# Partial transcripts are previews: cap their length so they stay cheap.
_PARTIAL_MAX_TOKENS = 48
NATIVE_WINDOW_S = 30  # Whisper's own window: every decode's audio is padded with silence to 30 s
# The window a phone turn is decoded in by default: ~3x faster than 30 s on tiny.en with the
# same word error rate (measured in the README, "Measured numbers").
DEFAULT_WINDOW_S = 15
# Silence a shorter window keeps after the turn: with less, tiny.en starts to repeat the turn's
# words until the token limit (seen at 10 s windows on 8 s turns and on noisy 2.5 s ones).
WINDOW_PAD_S = 10
_FRAMES_PER_S = 100  # log-mel frames per second of audio
# Tokens a decode may produce per second of audio, plus a floor: speech runs at ~5 a second,
# so this only stops a decode that loops on a phrase (the model can do that on a short window).
_TOKENS_PER_S = 12
_MIN_TOKENS = 24
# faster-whisper's defaults for one temperature-0 pass without timestamps
_NO_SPEECH_THRESHOLD = 0.6
_LOG_PROB_THRESHOLD = -1.0
_MAX_INITIAL_TIMESTAMP_INDEX = 50
# Text that gzip shrinks more than this repeats itself (faster-whisper's own fallback threshold):
# a short-window decode like that is decoded again in the full window.
_REPEATS_RATIO = 2.4


def _import_faster_whisper() -> Any:
    try:
        import faster_whisper
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingModelError(
            "the faster-whisper engine is not installed", extra="asr", package="faster-whisper"
        ) from exc
    return faster_whisper


class FasterWhisperEngine(BaseAsrEngine):
    """faster-whisper on CPU (or CUDA when ``device="cuda"``).

    Thread-safe: ``transcribe`` may be called from several threads; with ``num_workers``
    above one, that many decodes run in parallel, otherwise they queue in CTranslate2.
    """

    name = "faster-whisper"

    def __init__(
        self,
        *,
        model: str = TINY_EN,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 1,
        num_workers: int = 1,
        beam_size: int = 1,
        language: str | None = None,
        initial_prompt: str | None = None,
        word_timestamps: bool = False,
        lead_in_ms: int = 0,
        window_s: float = DEFAULT_WINDOW_S,
    ) -> None:
        self._lib = _import_faster_whisper()
        if not 0 < window_s <= NATIVE_WINDOW_S:
            raise InvalidArgument(f"window_s must be above 0 and at most {NATIVE_WINDOW_S}")
        if cpu_threads < 1 or num_workers < 1 or beam_size < 1:
            raise InvalidArgument("cpu_threads, num_workers and beam_size must be at least 1")
        if lead_in_ms < 0:
            raise InvalidArgument("lead_in_ms must not be negative")
        if is_english_only(model) and language not in (None, "en"):
            raise InvalidArgument(f"model {model!r} is English-only; language must be 'en'")
        self.model_name = model
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads
        self.num_workers = num_workers
        self.beam_size = beam_size
        self.language = "en" if is_english_only(model) else language
        self.initial_prompt = initial_prompt or None
        self.word_timestamps = word_timestamps
        self.lead_in_ms = lead_in_ms
        self.window_s = window_s
        self._model: Any = None
        self._tokenizer: Any = None
        self._suppress: tuple[int, ...] = ()
        self._prompt: list[int] = []
        self.window_redecodes = 0  # short-window decodes that repeated themselves (tests, logs)
        self._in_flight = 0
        self._lock = threading.Lock()

    @classmethod
    def options_from(cls, settings: AsrSettings) -> dict[str, Any]:
        return {
            **super().options_from(settings),
            "cpu_threads": settings.threads,
            "beam_size": settings.beam_size,
            "initial_prompt": settings.initial_prompt or None,
            "lead_in_ms": settings.lead_in_ms,
            "window_s": settings.window_s,
        }

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> None:
        if self._model is not None:
            return
        path = resolve_model(self.model_name)
        started = time.perf_counter()
        self._model = self._lib.WhisperModel(
            str(path),
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=self.cpu_threads,
            num_workers=self.num_workers,
            local_files_only=True,
        )
        self._prepare_short_window()
        log.info(
            "asr engine loaded",
            extra={
                "engine": self.name,
                "model": self.model_name,
                "device": self.device,
                "load_s": round(time.perf_counter() - started, 3),
            },
        )

    def busy(self) -> bool:
        with self._lock:
            return self._in_flight >= self.num_workers

    def _transcribe(self, pcm: np.ndarray, partial: bool) -> TranscriptResult:
        with self._lock:
            self._in_flight += 1
        started = time.perf_counter()
        try:
            segments, info = self._run(self.decoder_input(pcm, partial), partial)
        except Exception as exc:
            log.warning("asr decode failed", extra={"engine": self.name, "error": type(exc).__name__})
            raise EngineFailure("speech recognition failed") from exc
        finally:
            with self._lock:
                self._in_flight -= 1
        return _result(
            segments,
            info.language,
            audio_seconds(pcm),
            time.perf_counter() - started,
            self._lead_in(partial) / self.sample_rate,
        )

    def _lead_in(self, partial: bool) -> int:
        return 0 if partial else self.lead_in_ms * self.sample_rate // 1000

    def decoder_input(self, pcm: np.ndarray, partial: bool) -> np.ndarray:
        """What the model decodes for ``pcm``: a final gets ``lead_in_ms`` of silence first."""
        lead = self._lead_in(partial)
        if not lead:
            return pcm
        return np.concatenate([np.zeros(lead, dtype=np.float32), pcm])

    @property
    def short_window(self) -> bool:
        """Decodes read a window shorter than Whisper's own (not with word times, nor when the
        language is detected: both take faster-whisper's own path)."""
        return self.window_s < NATIVE_WINDOW_S and not self.word_timestamps and self.language is not None

    def _prepare_short_window(self) -> None:
        """The decoder prompt and suppressed tokens, built once (as faster-whisper builds them
        per call: English, transcription, no timestamps, the initial prompt as earlier text)."""
        if not self.short_window:
            return
        tok_mod = self._lib.tokenizer
        model = self._model
        self._tokenizer = tok_mod.Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=self.language,
        )
        prompt: list[int] = []
        if self.initial_prompt:
            prompt = [self._tokenizer.sot_prev, *self._tokenizer.encode(" " + self.initial_prompt.strip())]
            prompt = prompt[: model.max_length // 2]
        self._prompt = [*prompt, *self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        self._suppress = self._lib.transcribe.get_suppressed_tokens(self._tokenizer, [-1])

    def window_frames(self, samples: int) -> int:
        """Log-mel frames the encoder reads for ``samples`` of audio: the audio padded with
        silence to ``window_s``, and a longer turn to ``WINDOW_PAD_S`` after its end, in whole
        seconds (at most Whisper's 30 s)."""
        seconds = max(self.window_s, float(np.ceil(samples / self.sample_rate + WINDOW_PAD_S)))
        return int(min(seconds, NATIVE_WINDOW_S) * _FRAMES_PER_S)

    def _run(self, pcm: np.ndarray, partial: bool) -> tuple[list[Any], Any]:
        if self.short_window:
            segments, info = self._run_short(pcm, partial)
            text = " ".join(s.text for s in segments)
            if not text or _compression_ratio(text) <= _REPEATS_RATIO:
                return segments, info
            # noisy short turns can loop ("run run run ..."); the full window did not on the
            # onset set's (python -m phoneagent.devtools.onset_bench): pay for it only here
            with self._lock:
                self.window_redecodes += 1
            ASR_WINDOW_REDECODES.labels(engine=self.name).inc()
            log.info("asr decode repeated itself, decoding in the full window", extra={"engine": self.name})
        words = self.word_timestamps and not partial
        segments, info = self._model.transcribe(
            pcm,
            language=self.language,
            beam_size=1 if partial else self.beam_size,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            initial_prompt=self.initial_prompt,
            vad_filter=False,
            without_timestamps=not words,
            word_timestamps=words,
            max_new_tokens=_PARTIAL_MAX_TOKENS if partial else None,
        )
        # ``segments`` is a lazy generator: the decode happens while it is consumed.
        return list(segments), info

    def _run_short(self, pcm: np.ndarray, partial: bool) -> tuple[list[Any], Any]:
        """One temperature-0 pass over a window of ``window_frames``: what ``transcribe`` does
        for a phone turn, but the encoder (most of the cost: ~330 ms of a ~430 ms decode of a
        3 s question at 30 s on two cores) reads only the padded turn instead of 30 s."""
        model = self._model
        features = model.feature_extractor(pcm)[:, : NATIVE_WINDOW_S * _FRAMES_PER_S]
        frames = self.window_frames(len(pcm))
        features = self._lib.audio.pad_or_trim(features, frames)
        encoded = model.encode(features)
        audio_s = len(pcm) / self.sample_rate
        budget = _PARTIAL_MAX_TOKENS if partial else _MIN_TOKENS + int(_TOKENS_PER_S * audio_s)
        max_length = min(model.max_length, len(self._prompt) + budget)
        result = model.model.generate(
            encoded,
            [self._prompt],
            beam_size=1 if partial else self.beam_size,
            patience=1,
            length_penalty=1,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            max_initial_timestamp_index=_MAX_INITIAL_TIMESTAMP_INDEX,
        )[0]
        tokens = result.sequences_ids[0]
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        text = self._tokenizer.decode(tokens)
        # faster-whisper's no-speech rule; and on silence a short window yields a lone "." where
        # the full one yields nothing: text without a word is no speech either
        silent = result.no_speech_prob > _NO_SPEECH_THRESHOLD and avg_logprob <= _LOG_PROB_THRESHOLD
        if silent or not any(ch.isalnum() for ch in text):
            return [], _Info(self.language)
        return [_Segment(text, avg_logprob, result.no_speech_prob)], _Info(self.language)

    def close(self) -> None:
        self._model = None


@dataclass(frozen=True)
class _Segment:
    """One short-window decode, shaped like faster-whisper's segment for :func:`_result`."""

    text: str
    avg_logprob: float
    no_speech_prob: float
    words: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Info:
    language: str | None


def _compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def _result(
    segments: list[Any], language: str, audio_s: float, compute_s: float, lead_s: float = 0.0
) -> TranscriptResult:
    """The engine's result; word times are shifted back by the ``lead_s`` of lead-in."""
    text = " ".join(s.text.strip() for s in segments if s.text.strip())
    words = tuple(
        Word(
            text=w.word.strip(),
            start=max(0.0, float(w.start) - lead_s),
            end=max(0.0, float(w.end) - lead_s),
            probability=float(w.probability),
        )
        for s in segments
        for w in (s.words or ())
    )
    if segments:
        avg_logprob = float(np.mean([s.avg_logprob for s in segments]))
        no_speech = float(max(s.no_speech_prob for s in segments))
    else:
        avg_logprob, no_speech = 0.0, 1.0
    return TranscriptResult(
        text=text,
        language=language,
        words=words,
        avg_logprob=avg_logprob,
        no_speech_prob=no_speech,
        audio_s=audio_s,
        compute_s=compute_s,
    )
