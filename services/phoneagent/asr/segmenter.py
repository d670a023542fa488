"""Per-call streaming endpointing: turns a stream of PCM frames into utterances.

Feed 16 kHz mono float32 frames (any length; 20 ms from the edge) with the stream time
of each frame's first sample. The segmenter runs a :class:`~phoneagent.asr.vad.SpeechDetector`
over fixed windows (32 ms for Silero) and emits:

* :class:`SpeechStarted` once speech has lasted ``min_speech_ms`` (published for the browser
  page's speaking indicator; barge-in is the edge's own VAD, confirmed by a final transcript);
  ``t`` is the onset time, not the detection time. Speech starts with
  the same hysteresis that ends it: a window at ``start_threshold`` or above opens it, and
  it holds while the windows stay at ``end_threshold`` or above. On telephone audio Silero's
  probability for many voices hovers around 0.5 through the first syllables; asking for
  ``min_speech_ms`` of windows all above ``start_threshold`` put the onset up to a second
  late, past the pre-roll, and cut the first words off. A soft first syllable that rises
  and dips once before the word holds still starts the speech: the onset moves back to
  where the probability first rose, up to ``onset_lookback_ms``. While no one speaks the detector's
  state is reset every ``vad_reset_ms`` of non-speech: Silero's recurrent state drifts over
  a long silence (an agent's greeting, a caller listening) until its probability for the next
  words stays under 0.3 for half a second - the onset then came late and the first words
  were lost - while from a fresh state it rises at once. The fresh state first hears the last
  few windows again, so a reset that falls on the first windows of a soft word still hears
  the word from its start;
* :class:`PartialDue` every ``partial_interval_ms`` of new speech, carrying only the last
  ``partial_window_s`` of audio, so a preview decode stays cheap;
* :class:`PauseDue` when a pause reaches ``turn_probe_ms`` of silence (only when that is set),
  carrying the utterance so far: the caller of the segmenter decides how long this pause may
  last (:meth:`Segmenter.set_end_wait`, see :mod:`phoneagent.asr.turn`); until it does, and
  whenever speech resumes, the wait is ``min_silence_ms``;
* :class:`Utterance` after the wait's trailing silence, or when the utterance
  reaches ``max_utterance_s`` (``forced``), with ``pre_roll_ms`` of audio before the onset
  so the first word is never clipped.

It is synchronous and deterministic: the same frames and times give the same events.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from phoneagent.asr.vad import VAD_RATE, SpeechDetector
from phoneagent.runtime.errors import InvalidArgument


@dataclass(frozen=True)
class SegmenterConfig:
    pre_roll_ms: int = 300
    min_speech_ms: int = 120
    min_silence_ms: int = 500
    tail_pad_ms: int = 200
    start_threshold: float = 0.5
    end_threshold: float = 0.35
    partial_interval_ms: int = 600
    partial_window_s: float = 3.0
    max_utterance_s: float = 20.0
    vad_reset_ms: int = 1000  # non-speech after which the detector's state is reset (0: never)
    onset_lookback_ms: int = 320  # how far back a confirmed onset may move to its first hit
    turn_probe_ms: int = 0  # silence after which a PauseDue asks for the end-of-turn wait (0: never)

    def validate(self) -> None:
        if not 0.0 < self.end_threshold <= self.start_threshold < 1.0:
            raise InvalidArgument("VAD thresholds must satisfy 0 < end_threshold <= start_threshold < 1")
        durations = (
            self.pre_roll_ms,
            self.min_speech_ms,
            self.min_silence_ms,
            self.tail_pad_ms,
            self.vad_reset_ms,
            self.turn_probe_ms,
            self.onset_lookback_ms,
        )
        if min(durations) < 0:
            raise InvalidArgument("segmenter durations must not be negative")
        if self.partial_interval_ms < 0 or self.partial_window_s <= 0:
            raise InvalidArgument("partial_interval_ms must be >= 0 and partial_window_s > 0")
        if self.max_utterance_s < 1.0:
            raise InvalidArgument("max_utterance_s must be at least 1 second")


@dataclass(frozen=True)
class SpeechStarted:
    t: float
    detected_at: float


@dataclass(frozen=True)
class PartialDue:
    pcm: np.ndarray
    speech_start: float
    t: float


@dataclass(frozen=True)
class PauseDue:
    """The caller paused: ``pcm`` is the utterance so far (from the pre-roll to ``t``) and
    ``speech_end`` the end of its last speech, which names this pause in ``set_end_wait``."""

    pcm: np.ndarray
    speech_start: float
    speech_end: float
    t: float


@dataclass(frozen=True)
class Utterance:
    """A finished utterance. ``pcm`` starts up to ``pre_roll_ms`` before ``speech_start`` and ends
    ``tail_pad_ms`` after ``speech_end``; ``ended_at`` is when the end was detected. ``forced``
    marks a cut by the length limit or the end of the stream; ``continued`` a length cut while
    the caller is still talking."""

    pcm: np.ndarray
    speech_start: float
    speech_end: float
    ended_at: float
    forced: bool = False
    continued: bool = False
    start_sample: int = 0  # stream position (samples fed so far) of pcm[0]
    onset_sample: int = 0  # stream position of the first window of the detected speech


SegmentEvent = SpeechStarted | PartialDue | PauseDue | Utterance


RESET_WARMUP = 4  # windows (128 ms for Silero) a reset detector hears again before going on


def _windows(ms: float, window_s: float) -> int:
    return max(0, math.ceil(ms / 1000.0 / window_s - 1e-9))


class Segmenter:
    """Endpointing state machine for one audio stream."""

    def __init__(self, detector: SpeechDetector, config: SegmenterConfig | None = None) -> None:
        self.config = config or SegmenterConfig()
        self.config.validate()
        self._detector = detector
        self._win = detector.window
        self._win_s = self._win / VAD_RATE
        c = self.config
        self._pre_roll_w = _windows(c.pre_roll_ms, self._win_s)
        self._min_speech_w = max(1, _windows(c.min_speech_ms, self._win_s))
        self._min_silence_w = max(1, _windows(c.min_silence_ms, self._win_s))
        self._partial_w = _windows(c.partial_interval_ms, self._win_s)
        self._probe_w = _windows(c.turn_probe_ms, self._win_s)
        self._reset_w = _windows(c.vad_reset_ms, self._win_s)
        self._lookback_w = _windows(c.onset_lookback_ms, self._win_s)
        self._pending = np.zeros(0, dtype=np.float32)
        self.reset()

    @property
    def in_speech(self) -> bool:
        return self._speaking

    @property
    def speech_end(self) -> float:
        """End of the last speech window of the open utterance."""
        return self._last_speech_end

    @property
    def silence_s(self) -> float:
        """Silence since the end of the open utterance's last speech."""
        return self._silence * self._win_s if self._speaking else 0.0

    def set_end_wait(self, speech_end: float, seconds: float) -> bool:
        """Let the pause that followed ``speech_end`` end the utterance after ``seconds`` of
        silence. Ignored (False) when the caller has spoken since, or no utterance is open."""
        if not self._speaking or speech_end != self._last_speech_end:
            return False
        self._wait_w = max(1, _windows(seconds * 1000.0, self._win_s))
        return True

    def reset(self) -> None:
        """Forget all audio and state (for example after the call is re-synchronised)."""
        self._detector.reset()
        self._pending = np.zeros(0, dtype=np.float32)
        self._ring: deque[tuple[float, np.ndarray]] = deque(
            maxlen=max(RESET_WARMUP, self._pre_roll_w + self._min_speech_w + self._lookback_w)
        )
        self._hit_w: int | None = None  # first window at the end threshold of a possible onset
        self._hit_quiet = 0  # non-speech windows in a row since then
        self._windows_seen = 0  # windows stepped since the last reset: the stream position
        self._run = 0
        self._quiet = 0  # windows of non-speech in a row while idle
        self.vad_resets = 0
        self._speaking = False
        self._buffer: list[np.ndarray] = []
        self._buffer_t = 0.0
        self._buffer_w = 0  # stream window index of the buffer's first window
        self._onset_w = 0
        self._speech_start = 0.0
        self._last_speech_end = 0.0
        self._silence = 0
        self._since_partial = 0
        self._wait_w = self._min_silence_w

    def feed(self, frame: np.ndarray, t: float) -> list[SegmentEvent]:
        """Add one frame whose first sample is at stream time ``t`` (seconds)."""
        if frame.dtype != np.float32 or frame.ndim != 1:
            raise InvalidArgument("segmenter frames must be mono float32")
        start_t = t - len(self._pending) / VAD_RATE
        data = np.concatenate([self._pending, frame]) if len(self._pending) else frame
        events: list[SegmentEvent] = []
        n = len(data) // self._win
        for k in range(n):
            window = data[k * self._win : (k + 1) * self._win]
            events.extend(self._step(window, start_t + k * self._win_s))
        self._pending = data[n * self._win :].copy()
        return events

    def flush(self, t: float) -> list[SegmentEvent]:
        """End of stream at time ``t``: close an open utterance (marked ``forced``)."""
        events: list[SegmentEvent] = []
        if self._speaking and self._buffer:
            events.append(self._cut(end=self._last_speech_end, ended_at=t, forced=True))
        self.reset()
        return events

    def _step(self, window: np.ndarray, t: float) -> list[SegmentEvent]:
        prob = self._detector.probability(window)
        self._windows_seen += 1
        if self._speaking:
            return self._step_speaking(window, t, prob)
        return self._step_idle(window, t, prob)

    def _step_idle(self, window: np.ndarray, t: float, prob: float) -> list[SegmentEvent]:
        self._ring.append((t, window))
        held = self._run > 0 and prob >= self.config.end_threshold
        self._run = self._run + 1 if held or prob >= self.config.start_threshold else 0
        self._quiet = self._quiet + 1 if prob < self.config.end_threshold else 0
        self._track_hit(prob)
        if self._reset_w and self._quiet >= self._reset_w:
            self._restart_detector()
        if self._run < self._min_speech_w:
            return []
        onset_w = self._windows_seen - self._run
        if self._hit_w is not None:
            onset_w = max(min(onset_w, self._hit_w), onset_w - self._lookback_w)
        first_w = self._windows_seen - len(self._ring)
        skip = max(0, onset_w - self._pre_roll_w - first_w)
        windows = list(self._ring)[skip:]
        self._speaking = True
        self._buffer = [w for _, w in windows]
        self._buffer_t = windows[0][0]
        self._buffer_w = first_w + skip
        self._onset_w = onset_w
        self._speech_start = onset = t - (self._windows_seen - 1 - onset_w) * self._win_s
        self._last_speech_end = t + self._win_s
        self._silence = 0
        self._since_partial = self._run
        self._ring.clear()
        self._run = 0
        self._hit_w = None
        return [SpeechStarted(t=onset, detected_at=t + self._win_s)]

    def _track_hit(self, prob: float) -> None:
        """Remember where a possible onset first reached the end threshold; speech confirmed
        within ``onset_lookback_ms`` of quiet after it starts there. On telephone audio a soft
        first syllable ("who", "what") often peaks once and dips under the end threshold before
        the rest of the word holds above it: the run restarts, and the onset (and the pre-roll
        measured from it) came 0.3 s late, past the first word - depending only on where the
        32 ms windows happened to fall."""
        if prob >= self.config.end_threshold:
            if self._hit_w is None:
                self._hit_w = self._windows_seen - 1
            self._hit_quiet = 0
        elif self._hit_w is not None:
            self._hit_quiet += 1
            if self._hit_quiet > self._lookback_w:
                self._hit_w = None

    def _restart_detector(self) -> None:
        """A fresh state hears the next words from their first syllable. It first hears the
        last ``RESET_WARMUP`` windows again (the current one included): the second of quiet
        that calls for a reset may end in the first windows of a soft word, still under the end
        threshold, and a state reset there never heard the word begin - for a soft voice Silero
        then stayed under the start threshold through the whole first phrase (the onset two
        seconds late: "Are you open on Saturday?" for "Few people know this, are you open on
        Saturday?"). Replayed, the word's start reaches the fresh state in order."""
        self._detector.reset()
        for _, window in list(self._ring)[-RESET_WARMUP:]:
            self._detector.probability(window)
        self._quiet = 0
        self.vad_resets += 1

    def _step_speaking(self, window: np.ndarray, t: float, prob: float) -> list[SegmentEvent]:
        self._buffer.append(window)
        end = t + self._win_s
        if prob < self.config.end_threshold:
            self._silence += 1
        else:
            self._silence = 0
            self._last_speech_end = end
            self._since_partial += 1
            self._wait_w = self._min_silence_w
        if self._silence >= self._wait_w:
            event = self._cut(end=self._last_speech_end, ended_at=end, forced=False)
            self._to_idle()
            return [event]
        if len(self._buffer) * self._win_s >= self.config.max_utterance_s:
            event = self._cut(end=end, ended_at=end, forced=True, continued=True)
            self._buffer, self._buffer_t, self._speech_start = [], end, end
            self._buffer_w = self._onset_w = self._windows_seen
            self._since_partial = 0
            return [event]
        if self._probe_w and self._silence == self._probe_w:
            pcm = np.concatenate(self._buffer)
            return [PauseDue(pcm, speech_start=self._speech_start, speech_end=self._last_speech_end, t=end)]
        if self._partial_w and self._since_partial >= self._partial_w and self._silence == 0:
            self._since_partial = 0
            return [self._partial(end)]
        return []

    def _partial(self, t: float) -> PartialDue:
        keep = max(1, int(self.config.partial_window_s / self._win_s))
        pcm = np.concatenate(self._buffer[-keep:])
        return PartialDue(pcm=pcm, speech_start=self._speech_start, t=t)

    def _cut(self, *, end: float, ended_at: float, forced: bool, continued: bool = False) -> Utterance:
        pcm = np.concatenate(self._buffer) if self._buffer else np.zeros(0, dtype=np.float32)
        keep_until = end + self.config.tail_pad_ms / 1000.0 - self._buffer_t
        pcm = pcm[: max(0, int(round(keep_until * VAD_RATE)))]
        return Utterance(
            pcm=pcm,
            speech_start=self._speech_start,
            speech_end=end,
            ended_at=ended_at,
            forced=forced,
            continued=continued,
            start_sample=self._buffer_w * self._win,
            onset_sample=self._onset_w * self._win,
        )

    def _to_idle(self) -> None:
        tail = self._buffer[-self._pre_roll_w :] if self._pre_roll_w else []
        tail_t = self._buffer_t + (len(self._buffer) - len(tail)) * self._win_s
        self._ring.clear()
        for i, w in enumerate(tail):
            self._ring.append((tail_t + i * self._win_s, w))
        self._speaking = False
        self._buffer = []
        self._run = 0
        self._hit_w = None
        self._hit_quiet = 0
        self._quiet = 0
        self._silence = 0
        self._wait_w = self._min_silence_w
