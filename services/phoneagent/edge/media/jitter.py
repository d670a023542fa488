"""Adaptive jitter buffer for 20 ms G.711, G.722 or Opus audio.

Packets are pushed as they arrive (with their arrival time); the playout clock pulls
exactly one frame every 20 ms. Frames are keyed by RTP timestamp, so reordering,
duplicates and multi-frame packets are handled without looking at sequence numbers.
Packets of any multiple of 10 ms (ptime 10, 30, 50 ...) are re-framed: their 10 ms
halves are keyed by timestamp too and join into 20 ms frames once both halves are here.
A frame whose other half was lost plays with that half silent. Payloads are decoded in playout
order (G.722 and Opus keep decoder state); G.711 and G.722 carry one payload byte per RTP clock
tick. An Opus packet is one frame that cannot be cut, so only 20 ms packets are taken (our SDP
asks for ptime 20); others count as malformed.

Delay adapts to the network: the target depth is ``frame + jitter_factor x J`` where J
is the RFC 3550 interarrival jitter estimate, clamped to [min_delay, max_delay]; it
rises at once and decays slowly.
- Too deep (depth averaged over ~16 pulls more than one frame over target): one frame
  is dropped; too shallow (more than one frame under): one concealment frame is
  inserted. At most one such step per ``adjust_interval`` pulls, so the delay moves
  without audible jumps. A frame with sound in it is dropped only once its talk spurt
  has played for ``onset_guard_ms``: the first words of a turn are never thinned out
  (the delay is then shed in the next quiet frames instead).
- Underrun (nothing at or after the playout point has arrived): the playout point
  does not advance, a concealment frame is played, and the delay grows by one frame.
  When packets come back with a hole (a pause in the stream), the frames already
  covered by that concealment are skipped rather than concealed twice.
- A missing frame with later frames present is lost: conceal and move on.
Concealment repeats the last good frame with a fade to silence over ``fade_frames``
frames, then plays silence. Memory is bounded by ``capacity`` frames; a packet further
ahead than that, or ``restart_after_late`` late packets in a row (the sender reset its
timestamps), restarts the buffer. A restart keeps the frames received but not yet played
and plays them first (a consumer that stalled, or a talk spurt whose start is still
queued, must not lose them); ``stats.discarded`` counts every received frame that was
never played for any reason other than arriving late or as a duplicate.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import numpy as np

from phoneagent.audio.g711 import PCMU
from phoneagent.audio.g722 import RtpCodec
from phoneagent.audio.pcm import Int16Array
from phoneagent.edge.media.rtp import Unwrapper

RESET_BEHIND_FRAMES = 150  # 3 s of 20 ms frames: a packet this far behind comes from a reset sender


class PushResult(enum.Enum):
    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    LATE = "late"
    MALFORMED = "malformed"
    RESTARTED = "restarted"  # accepted after dropping the buffer (jump or new stream)


@dataclass(frozen=True, slots=True)
class Frame:
    """One 20 ms frame of int16 PCM. ``concealed`` is true when it stands in for audio that
    had not arrived (faded repeat or silence); frames before playout starts are silence
    with ``concealed`` false."""

    pcm: Int16Array
    concealed: bool
    timestamp: int | None  # RTP timestamp of the frame played, None when concealed


@dataclass(slots=True)
class JitterStats:
    pushed: int = 0
    played: int = 0
    concealed: int = 0
    late: int = 0
    duplicate: int = 0
    malformed: int = 0
    dropped_for_delay: int = 0
    stretched: int = 0
    skipped: int = 0
    restarts: int = 0
    partial: int = 0  # frames played with one 10 ms half lost
    carried: int = 0  # unplayed frames kept across a restart
    discarded: int = 0  # received frames thrown away unplayed (reset, overflow), drops for delay aside
    deferred: int = 0  # delay drops put off so as not to cut into the start of a talk spurt


class JitterBuffer:
    def __init__(
        self,
        codec: RtpCodec = PCMU,
        *,
        frame_ms: int = 20,
        min_delay_ms: int = 40,
        max_delay_ms: int = 300,
        jitter_factor: float = 3.0,
        fade_frames: int = 3,
        adjust_interval: int = 5,
        target_decay_ms: float = 0.25,
        restart_after_late: int = 10,
        onset_guard_ms: int = 1000,
        quiet_dbfs: float = -45.0,
    ) -> None:
        if not 0 < min_delay_ms <= max_delay_ms:
            raise ValueError("jitter buffer needs 0 < min_delay_ms <= max_delay_ms")
        self.codec = codec
        self.frame_ms = frame_ms
        self.frame_samples = codec.clock_rate * frame_ms // 1000  # RTP clock ticks (= payload bytes)
        self.half_samples = self.frame_samples // 2  # 10 ms: the smallest packet re-framed
        self.pcm_samples = codec.sample_rate * frame_ms // 1000  # decoded samples per frame
        self.min_delay_ms = min_delay_ms
        self.max_delay_ms = max_delay_ms
        self.jitter_factor = jitter_factor
        self.fade_frames = fade_frames
        self.adjust_interval = adjust_interval
        self.target_decay_ms = target_decay_ms
        self._target_ms = float(min_delay_ms)
        self.restart_after_late = restart_after_late
        self.onset_guard_frames = onset_guard_ms // frame_ms
        self.quiet_dbfs = quiet_dbfs
        self._floor_db = quiet_dbfs  # background level of the frames played (follows them down fast)
        self.capacity = 2 * math.ceil(max_delay_ms / frame_ms) + 2
        self.stats = JitterStats()
        self._silence = np.zeros(self.pcm_samples, dtype=np.int16)
        self._silence.flags.writeable = False
        self._ramps = self._build_ramps()
        self._jitter_ts = 0.0  # RFC 3550 J, in timestamp units
        self._max_transit_step = 2 * max_delay_ms * codec.clock_rate / 1000
        self._reset()

    # ---- state ---------------------------------------------------------------------------
    def _reset(self) -> None:
        self._ts = Unwrapper(32)
        self._base: int | None = None  # extended timestamp of frame index 0
        self._frames: dict[int, bytes] = {}
        self._carried_ts: dict[int, int] = {}  # RTP timestamps of frames carried over a restart
        self._halves: dict[int, bytes] = {}  # 10 ms halves of frames not yet complete, by half index
        self._next: int | None = None  # next frame index to play; None until playout starts
        self._latest = -1
        self._last_transit: float | None = None
        self._last_pcm: Int16Array | None = None
        self._conceal_run = 0
        self._since_adjust = 0
        self._late_run = 0
        self._stall_credit = 0  # frames of time already covered by underrun concealment
        self._level = 0.0  # depth averaged over about 16 pulls
        self._spurt = 0  # frames with sound played since the last quiet one (or underrun)

    def _build_ramps(self) -> list[np.ndarray]:
        n, fs = self.pcm_samples * self.fade_frames, self.pcm_samples
        gains = np.linspace(1.0, 0.0, n + 1, dtype=np.float32)[1:]
        return [gains[i * fs : (i + 1) * fs] for i in range(self.fade_frames)]

    @property
    def jitter_ms(self) -> float:
        return self._jitter_ts * 1000.0 / self.codec.clock_rate

    @property
    def target_delay_ms(self) -> float:
        return self._target_ms

    def _update_target(self) -> None:
        """Follow ``frame + jitter_factor x J`` up at once and down slowly (``target_decay_ms``
        per pull), so the short-term wobble of J does not make the delay seesaw."""
        raw = self.frame_ms + self.jitter_factor * self.jitter_ms
        raw = min(self.max_delay_ms, max(self.min_delay_ms, raw))
        self._target_ms = raw if raw > self._target_ms else max(raw, self._target_ms - self.target_decay_ms)

    @property
    def target_frames(self) -> int:
        return math.ceil(self.target_delay_ms / self.frame_ms - 1e-9)

    @property
    def depth(self) -> int:
        """Frames from the playout point to the newest frame received (missing ones included)."""
        if self._base is None:
            return 0
        start = self._next if self._next is not None else min(self._frames, default=self._latest + 1)
        return max(0, self._latest - start + 1)

    @property
    def playing(self) -> bool:
        return self._next is not None

    # ---- input ---------------------------------------------------------------------------
    def push(self, timestamp: int, payload: bytes, arrival: float) -> PushResult:
        """Add a packet's payload (``timestamp``: its RTP timestamp; ``arrival``: seconds, monotonic)."""
        self.stats.pushed += 1
        fs, hs = self.frame_samples, self.half_samples
        framed = self.codec.framed
        # a framed codec's packet (Opus) is one frame that cannot be cut: only 20 ms ones are taken
        if not payload or (self.codec.ticks(payload) != fs if framed else len(payload) % hs):
            self.stats.malformed += 1
            return PushResult.MALFORMED
        ext = self._ts.unwrap(timestamp & 0xFFFFFFFF)
        if self._base is None:
            self._base = ext
        half = round((ext - self._base) / hs)
        index = round((ext - self._base) / fs) if framed else half // 2
        result = PushResult.ACCEPTED
        if self._is_jump(index) or self._late_run >= self.restart_after_late:
            self._restart()
            ext = self._base = self._ts.unwrap(timestamp & 0xFFFFFFFF)
            half = index = 0
            result = PushResult.RESTARTED
        self._update_jitter(ext, arrival)
        if framed:
            stored = self._store(index, payload)
        elif half % 2 == 0 and len(payload) % fs == 0:  # whole 20 ms frames (the usual case)
            parts = range(len(payload) // fs)
            stored = sum(self._store(index + k, payload[k * fs : (k + 1) * fs]) for k in parts)
        else:
            parts = range(len(payload) // hs)
            stored = sum(self._store_half(half + k, payload[k * hs : (k + 1) * hs]) for k in parts)
        if stored:
            self._late_run = 0
            return result
        if self._next is not None and index < self._next:
            self._late_run += 1
            self.stats.late += 1
            return PushResult.LATE
        self.stats.duplicate += 1
        return PushResult.DUPLICATE

    def _is_jump(self, index: int) -> bool:
        """A packet too far ahead to hold (a new talk spurt after a long pause, or a new stream),
        or so far behind that no network held it that long (the sender reset its timestamps:
        playing it at once keeps the new stream's first words, instead of dropping them as late
        until ``restart_after_late`` have come). Measured from the newest frame when frames are
        queued: a backlog that built up while the consumer stalled is contiguous, not a jump."""
        if self._next is not None:
            ahead = index - max(self._next, self._latest)
            return ahead > self.capacity or -ahead > max(self.capacity, RESET_BEHIND_FRAMES)
        return self._latest >= 0 and abs(index - self._latest) > self.capacity

    def _restart(self) -> None:
        """Start a new time line at the packet being pushed; frames received but not yet played
        go on its front, in order, and play first."""
        self.stats.restarts += 1
        unplayed = [i for i in sorted(self._frames) if self._next is None or i >= self._next]
        data = [self._frames[i] for i in unplayed]
        stamps = [self._timestamp(i) for i in unplayed]
        self.stats.discarded += len(self._halves)
        keep_last, playing = self._last_pcm, self._next is not None
        self._reset()
        self._last_pcm = keep_last
        for k, (frame, ts) in enumerate(zip(data, stamps, strict=True)):
            self._frames[k - len(unplayed)] = frame
            self._carried_ts[k - len(unplayed)] = ts
        if unplayed:
            self.stats.carried += len(unplayed)
            self._latest = -1
            if playing:
                self._next = -len(unplayed)

    def _store(self, index: int, data: bytes) -> int:
        if self._next is not None and index < self._next:
            return 0
        if index in self._frames:
            return 0
        self._frames[index] = data
        self._latest = max(self._latest, index)
        # Nobody pulls yet: keep the newest ``capacity``. While playing, a packet that far ahead
        # restarts the buffer instead, so only frames carried over a restart come on top.
        bound = self.capacity if self._next is None else 2 * self.capacity + 1
        if len(self._frames) > bound:
            del self._frames[min(self._frames)]
            self.stats.discarded += 1
        return 1

    def _store_half(self, half: int, data: bytes) -> int:
        """One 10 ms half; the frame is stored once its other half is here too."""
        index = half // 2
        if (self._next is not None and index < self._next) or index in self._frames or half in self._halves:
            return 0
        other = half ^ 1
        if other in self._halves:
            pair = (data, self._halves.pop(other)) if half % 2 == 0 else (self._halves.pop(other), data)
            return self._store(index, pair[0] + pair[1])
        self._halves[half] = data
        if len(self._halves) > 2 * self.capacity:
            del self._halves[min(self._halves)]
            self.stats.discarded += 1
        return 1

    def _update_jitter(self, ext: int, arrival: float) -> None:
        transit = arrival * self.codec.clock_rate - ext
        if self._last_transit is not None:
            d = abs(transit - self._last_transit)
            if d <= self._max_transit_step:  # larger: a timestamp discontinuity, not network jitter
                self._jitter_ts += (d - self._jitter_ts) / 16.0
        self._last_transit = transit

    # ---- output --------------------------------------------------------------------------
    def pull(self) -> Frame:
        """Exactly one frame of ``frame_ms``; call once per playout tick."""
        self._update_target()
        if self._next is None and not self._try_start():
            return Frame(self._silence, False, None)
        self._skip_holes()
        if self._adjust_delay():
            return self._conceal()
        assert self._next is not None
        if self._halves:
            self._forget_halves_before(self._next)
        data = self._frames.pop(self._next, None)
        if data is not None:
            return self._play(self._next, data)
        if self._latest > self._next:
            partial = self._partial(self._next)
            if partial is not None:
                return partial
            self._next += 1  # lost: later frames are here, move on
        else:
            self._stall_credit += 1  # underrun: keep the playout point, the delay grows by one frame
            self._spurt = 0  # the sender paused: what comes next starts a talk spurt
        return self._conceal()

    def _try_start(self) -> bool:
        if not self._frames:
            return False
        first = min(self._frames)
        if self._latest - first + 1 < self.target_frames:
            return False
        self._next = first
        self._level = float(self.depth)
        return True

    def _skip_holes(self) -> None:
        """After an underrun (a pause in the stream, or a loss burst) the missing frames were
        already covered by concealment while the playout point stood still: skip them, down
        to the target depth, instead of concealing them a second time."""
        assert self._next is not None
        while self._stall_credit and self._next not in self._frames and self.depth > self.target_frames:
            self._next += 1
            self._stall_credit -= 1
            self.stats.skipped += 1

    def _adjust_delay(self) -> bool:
        """Move the smoothed depth toward the target by one frame, at most once per
        ``adjust_interval`` pulls. Returns True when a frame must be stretched (concealment
        without advancing)."""
        assert self._next is not None
        depth, target = self.depth, self.target_frames
        self._level += (depth - self._level) / 16.0
        self._since_adjust += 1
        if self._since_adjust < self.adjust_interval:
            return False
        if self._level > target + 1 and depth > target:
            if not self._may_drop(self._next):
                self.stats.deferred += 1
                return False
            self._frames.pop(self._next, None)  # drop the oldest frame (or a hole)
            self._next += 1
            self._level -= 1
            self._since_adjust = 0
            self.stats.dropped_for_delay += 1
        elif self._level < target - 1 and 0 < depth < target:
            self._level += 1
            self._since_adjust = 0
            self.stats.stretched += 1
            return True
        return False

    def _may_drop(self, index: int) -> bool:
        """A frame may be dropped to cut the delay when it is a hole, quiet, or deep enough into
        its talk spurt (never in the first ``onset_guard_ms``), or when the buffer is nearly full."""
        data = self._frames.get(index)
        if data is None or self.depth >= 2 * self.capacity:
            return True
        return self._is_quiet(self.codec.peek(data)) or self._spurt >= self.onset_guard_frames

    def _is_quiet(self, pcm: Int16Array) -> bool:
        return _dbfs(pcm) < max(self.quiet_dbfs, self._floor_db + 6.0)

    def _note_played(self, pcm: Int16Array) -> None:
        """Follow the background level and the length of the talk spurt being played."""
        level = _dbfs(pcm)
        self._spurt = 0 if level < max(self.quiet_dbfs, self._floor_db + 6.0) else self._spurt + 1
        rise = min(0.1, level - self._floor_db)  # dB per frame: up slowly, down at once
        self._floor_db = level if rise < 0 else self._floor_db + rise

    def _forget_halves_before(self, index: int) -> None:
        for half in [h for h in self._halves if h < 2 * index]:
            del self._halves[half]

    def _partial(self, index: int) -> Frame | None:
        """Frame ``index`` with one 10 ms half lost (later frames are here): play the half that came."""
        first, second = self._halves.pop(2 * index, None), self._halves.pop(2 * index + 1, None)
        if first is None and second is None:
            return None
        pcm = np.zeros(self.pcm_samples, dtype=np.int16)
        half = self.pcm_samples // 2
        if first is not None:
            pcm[:half] = self.codec.decode(first)
        if second is not None:
            pcm[half:] = self.codec.decode(second)
        self.stats.partial += 1
        return self._play_pcm(index, pcm)

    def _play(self, index: int, data: bytes) -> Frame:
        return self._play_pcm(index, self.codec.decode(data))

    def _play_pcm(self, index: int, pcm: Int16Array) -> Frame:
        assert self._next is not None and self._base is not None
        self._next = index + 1
        self._last_pcm = pcm
        if index == 0:
            self._spurt = 0  # the first frame of a time line: the sender started (again)
        self._note_played(pcm)
        self._conceal_run = 0
        self._stall_credit = 0
        self.stats.played += 1
        return Frame(pcm, False, self._timestamp(index))

    def _timestamp(self, index: int) -> int:
        carried = self._carried_ts.pop(index, None) if index < 0 else None
        if carried is not None:
            return carried
        assert self._base is not None
        return (self._base + index * self.frame_samples) & 0xFFFFFFFF

    def _conceal(self) -> Frame:
        self.stats.concealed += 1
        run = self._conceal_run
        self._conceal_run += 1
        if self._last_pcm is None or run >= self.fade_frames:
            return Frame(self._silence, True, None)
        faded = np.rint(self._last_pcm.astype(np.float32) * self._ramps[run]).astype(np.int16)
        return Frame(faded, True, None)

    def reset(self) -> None:
        """Forget all buffered audio (e.g. on a new SSRC); the jitter estimate is kept."""
        self.stats.discarded += len(self._frames) + len(self._halves)
        self._reset()


def _dbfs(pcm: Int16Array) -> float:
    x = pcm.astype(np.float32)
    return 10.0 * math.log10(float(np.dot(x, x)) / (max(1, x.size) * 32768.0 * 32768.0) + 1e-10)
