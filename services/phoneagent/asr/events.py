"""What one call's recognition produces (:class:`~phoneagent.asr.stream.AsrSession`): speech
started, partials, a preflight when the turn is likely over, the final, or a failed decode."""

from __future__ import annotations

from dataclasses import dataclass, field

from phoneagent.asr.engines.base import TranscriptResult
from phoneagent.asr.turn import Decision
from phoneagent.runtime.errors import ErrorKind


@dataclass(frozen=True)
class SpeechStarted:
    turn: int
    t: float
    detected_at: float


@dataclass(frozen=True)
class Partial:
    turn: int
    text: str
    speech_start: float
    t: float


@dataclass(frozen=True)
class Preflight:
    """The turn is likely over: the text its final is expected to carry, before the silence
    that confirms it has passed."""

    turn: int
    text: str
    speech_start: float
    speech_end: float
    decision: Decision


@dataclass(frozen=True)
class Final:
    turn: int
    text: str
    speech_start: float
    speech_end: float
    final_emitted: float
    is_backchannel: bool
    forced: bool = False
    result: TranscriptResult | None = field(default=None, compare=False, repr=False)
    endpoint: float = 0.0  # when end of speech was declared (audio clock, Unix seconds)
    start_sample: int = 0  # stream position (16 kHz samples fed to the session) of the decoded audio
    onset_sample: int = 0  # stream position where the VAD heard the speech start


@dataclass(frozen=True)
class AsrFailed:
    """A final decode failed; ``message`` is safe to send on the bus."""

    turn: int
    kind: ErrorKind
    message: str


AsrEvent = SpeechStarted | Partial | Preflight | Final | AsrFailed
