"""Speech rendered whole, on request: the TTS side of ``pa.v1.tts.render``.

The edge asks for the warm-transfer summary it plays to the human before bridging a call
(:mod:`phoneagent.edge.transfer`): a :class:`~phoneagent.v1.media_pb2.RenderRequest` with the
text and the rate it plays at. The answer carries all of the audio in one reply, so the text
is bounded (``subjects.RENDER_MAX_TEXT`` characters) and the speech is cut at the shorter of
the request's ``max_seconds``, :data:`MAX_SECONDS`, and what fits ``subjects.RENDER_MAX_BYTES``.
A bad request or an engine failure is answered with an error, never left unanswered.
"""

from __future__ import annotations

import logging

import numpy as np

from phoneagent.audio.resample import resample
from phoneagent.runtime import subjects
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.tts.chunker import split_text
from phoneagent.tts.engines.base import TtsEngine
from phoneagent.tts.normalize import normalize
from phoneagent.v1 import common_pb2, media_pb2

log = logging.getLogger(__name__)
MAX_SECONDS = 30.0
MIN_RATE, MAX_RATE = 8000, 48000
SENTENCE_PAUSE_S = 0.2  # silence between the chunks of a text


def synthesize_whole(
    engine: TtsEngine, text: str, voice: str, speed: float, *, max_s: float | None = None
) -> np.ndarray:
    """``text`` as one buffer at the engine's rate, a short pause between its chunks; cut after
    ``max_s`` seconds (synthesis stops there too)."""
    limit = None if max_s is None else int(max_s * engine.native_rate)
    pause = np.zeros(int(SENTENCE_PAUSE_S * engine.native_rate), dtype=np.float32)
    parts: list[np.ndarray] = []
    total = 0
    for chunk in split_text(text, first_in_reply=False):
        for piece in engine.synthesize(normalize(chunk.text), voice, speed):
            parts.append(piece)
            total += len(piece)
            if limit is not None and total >= limit:
                return np.concatenate(parts)[:limit]
        parts.append(pause)
        total += pause.size
    return np.concatenate(parts[:-1]) if len(parts) > 1 else np.zeros(0, dtype=np.float32)


def check_request(req: media_pb2.RenderRequest) -> tuple[str, int, float]:
    """(text, rate, seconds at most) of a request; InvalidArgument says what is wrong."""
    text = " ".join(req.text.split())
    if not text:
        raise InvalidArgument("render text is empty")
    if len(text) > subjects.RENDER_MAX_TEXT:
        raise InvalidArgument(f"render text is longer than {subjects.RENDER_MAX_TEXT} characters")
    rate = req.sample_rate
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InvalidArgument(f"sample_rate must be {MIN_RATE}-{MAX_RATE} Hz")
    seconds = MAX_SECONDS if not 0 < req.max_seconds <= MAX_SECONDS else float(req.max_seconds)
    return text, rate, min(seconds, subjects.RENDER_MAX_BYTES / (2 * rate))


def render(engine: TtsEngine, voice: str, speed: float, req: media_pb2.RenderRequest) -> np.ndarray:
    """Blocking (run it in a worker thread): int16 PCM at the requested rate."""
    text, rate, seconds = check_request(req)
    audio = synthesize_whole(engine, text, voice, speed, max_s=seconds)
    pcm = resample(audio, engine.native_rate, rate)
    return pcm[: int(seconds * rate)]


def error_reply(meta: common_pb2.EventMeta, exc: PhoneAgentError) -> media_pb2.RenderReply:
    err = common_pb2.Error(kind=exc.kind.wire, retryable=exc.retryable, message=exc.message, source="tts")  # type: ignore[arg-type]
    return media_pb2.RenderReply(meta=meta, error=err)


def failure(exc: Exception) -> PhoneAgentError:
    """What a reply may say about an exception: its kind and safe text, never its repr."""
    if isinstance(exc, PhoneAgentError):
        return exc
    log.error("tts render failed", exc_info=exc)
    return PhoneAgentError(ErrorKind.ENGINE_FAILURE, "speech could not be rendered")
