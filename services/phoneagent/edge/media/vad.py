"""Barge-in speech detector for telephone audio, one 20 ms frame at a time.

Cheap on purpose (a few microseconds per frame): it decides when the caller starts
talking over the agent, and a neural VAD in the ASR service does the fine work.

Per frame: the level (dBFS) and the zero-crossing rate. A noise floor follows the
level: down quickly, up slowly, and not at all while speech is suspected. A frame is
*loud* when it is ``start_db`` over the floor (``keep_db`` once speech has started:
hysteresis) and above an absolute minimum; a loud frame is *voiced* when its
zero-crossing rate is that of voiced speech, not of hiss or a click.

States: silence -> tentative on the first voiced frame (event STARTED, at the frame
start) -> confirmed once ``min_speech_ms`` of loud frames have accumulated, of which
at least half voiced (event CONFIRMED), with gaps of up to ``max_gap_ms`` tolerated;
a longer gap before confirmation is a false start (event REJECTED). Confirmed speech
ends after ``hangover_ms`` without loud frames (event ENDED, at the end of the last
loud frame). A cough or a line click is too short to be confirmed.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from phoneagent.runtime.errors import InvalidArgument


class VadEventKind(enum.Enum):
    STARTED = "started"  # tentative: maybe speech
    CONFIRMED = "confirmed"  # enough speech to act on (barge-in)
    REJECTED = "rejected"  # the tentative start was not speech
    ENDED = "ended"  # confirmed speech stopped


@dataclass(frozen=True, slots=True)
class VadEvent:
    kind: VadEventKind
    at_ms: float  # when the event was decided (end of the deciding frame), or end of speech for ENDED
    onset_ms: float  # start of the first frame of this speech segment


@dataclass(frozen=True, slots=True)
class VadConfig:
    sample_rate: int = 8000
    frame_ms: int = 20
    start_db: float = 9.0
    keep_db: float = 6.0
    min_level_dbfs: float = -50.0
    max_voiced_zcr: float = 0.3
    min_speech_ms: int = 200
    max_gap_ms: int = 60
    hangover_ms: int = 300
    warmup_ms: int = 200
    floor_rise_per_s: float = 3.0  # dB per second the floor may climb during non-speech
    initial_floor_dbfs: float = -60.0

    def __post_init__(self) -> None:
        if self.sample_rate * self.frame_ms % 1000:
            raise InvalidArgument("VAD frame must be a whole number of samples")
        if not self.keep_db <= self.start_db:
            raise InvalidArgument("VAD keep_db must not exceed start_db")
        if self.min_speech_ms < self.frame_ms:
            raise InvalidArgument("VAD min_speech_ms must be at least one frame")


class _State(enum.Enum):
    SILENCE = 0
    TENTATIVE = 1
    SPEECH = 2


class BargeInVad:
    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = cfg = config or VadConfig()
        self.frame_samples = cfg.sample_rate * cfg.frame_ms // 1000
        self._min_frames = math.ceil(cfg.min_speech_ms / cfg.frame_ms)
        self._max_gap = cfg.max_gap_ms // cfg.frame_ms
        self._hangover = math.ceil(cfg.hangover_ms / cfg.frame_ms)
        self._warmup = cfg.warmup_ms // cfg.frame_ms
        self._rise = cfg.floor_rise_per_s * cfg.frame_ms / 1000.0
        self.reset()

    def reset(self) -> None:
        self.floor_db = self.config.initial_floor_dbfs
        self._frames = 0
        self._state = _State.SILENCE
        self._onset = 0.0
        self._loud = 0
        self._voiced = 0
        self._gap = 0
        self._last_loud_end = 0.0

    @property
    def speaking(self) -> bool:
        return self._state is _State.SPEECH

    @property
    def speech_ms(self) -> float:
        """How long the current confirmed speech has lasted, from its onset to the end of its
        last loud frame (the hangover that follows it not counted); 0 when none."""
        return self._last_loud_end - self._onset if self._state is _State.SPEECH else 0.0

    def process(self, frame: npt.NDArray[np.int16]) -> VadEvent | None:
        """Feed one frame of int16 PCM (``frame_ms`` long); returns an event on a state change."""
        if frame.shape != (self.frame_samples,) or frame.dtype != np.int16:
            raise InvalidArgument(f"VAD expects {self.frame_samples} int16 samples per frame")
        level, zcr = _features(frame)
        start_ms = self._frames * self.config.frame_ms
        self._frames += 1
        if self._frames <= self._warmup:
            self._learn_floor(level, warm=True)
            return None
        event = self._step(level, zcr, start_ms)
        if self._state is _State.SILENCE:
            self._learn_floor(level, warm=False)
        return event

    def _learn_floor(self, level: float, *, warm: bool) -> None:
        if warm and self._frames == 1:
            self.floor_db = level
        elif level < self.floor_db:
            self.floor_db += (level - self.floor_db) * 0.3
        elif warm:
            self.floor_db += (level - self.floor_db) * 0.3
        else:
            self.floor_db += min(self._rise, (level - self.floor_db) * 0.05)

    def _step(self, level: float, zcr: float, start_ms: float) -> VadEvent | None:
        cfg = self.config
        end_ms = start_ms + cfg.frame_ms
        over = level - self.floor_db
        threshold = cfg.start_db if self._state is _State.SILENCE else cfg.keep_db
        loud = over >= threshold and level >= cfg.min_level_dbfs
        voiced = loud and zcr <= cfg.max_voiced_zcr
        if self._state is _State.SILENCE:
            if voiced:
                self._state = _State.TENTATIVE
                self._onset, self._loud, self._voiced, self._gap = start_ms, 1, 1, 0
                self._last_loud_end = end_ms
                return self._maybe_confirm(end_ms) or VadEvent(VadEventKind.STARTED, end_ms, start_ms)
            return None
        if loud:
            self._loud += 1
            self._voiced += int(voiced)
            self._gap = 0
            self._last_loud_end = end_ms
        else:
            self._gap += 1
        if self._state is _State.TENTATIVE:
            if self._gap > self._max_gap:
                self._state = _State.SILENCE
                return VadEvent(VadEventKind.REJECTED, end_ms, self._onset)
            return self._maybe_confirm(end_ms)
        if self._gap >= self._hangover:
            self._state = _State.SILENCE
            return VadEvent(VadEventKind.ENDED, self._last_loud_end, self._onset)
        return None

    def _maybe_confirm(self, end_ms: float) -> VadEvent | None:
        if self._loud >= self._min_frames and 2 * self._voiced >= self._loud:
            self._state = _State.SPEECH
            return VadEvent(VadEventKind.CONFIRMED, end_ms, self._onset)
        return None


def _features(frame: npt.NDArray[np.int16]) -> tuple[float, float]:
    """(level in dBFS, zero-crossing rate in crossings per sample)."""
    x = frame.astype(np.float32)
    power = float(np.dot(x, x)) / (x.size * 32768.0 * 32768.0)
    level = 10.0 * math.log10(power + 1e-10)
    signs = np.signbit(frame)
    zcr = float(np.count_nonzero(signs[1:] != signs[:-1])) / (frame.size - 1)
    return level, zcr
