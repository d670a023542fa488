"""Caller frames in sequence order for one ASR session, without repeats or lost audio after a takeover.

A session taken over from a dead (or drained) replica starts listening some time after the
old owner stopped: the caller's words in between are not lost because the edge keeps the
last seconds of caller audio (:mod:`phoneagent.edge.replay`) and publishes them again once
the new owner appears in the stage heartbeats. The new session therefore *holds* the live
frames it receives until the replay has filled the gap before them, then releases replayed
and held frames together in sequence order. Frames captured before the end of the call's
last final transcript were already transcribed by the old owner and are skipped. If no
replay comes within ``wait_s`` (an edge without a replay buffer), the held frames go on as
they are. After that, and always for a fresh session, a frame whose sequence number is among
the last ``RECENT`` seen is dropped, so a replay can never be transcribed twice; replayed
frames older than what was released are dropped too (a replay that came too late). Repeats
are recognised by membership, not by "not above the highest so far", so one stray frame with
a huge sequence number cannot make the session ignore the rest of the call.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from phoneagent.v1 import media_pb2

MAX_HELD = 1000  # 20 s of 20 ms frames: a bound on what a resuming session holds
RECENT = 1000  # sequence numbers remembered for dropping repeats: far more than a replay holds


class FrameGate:
    def __init__(
        self,
        *,
        resuming: bool,
        wait_s: float = 1.5,
        skip_before_ns: int = 0,
        max_held: int = MAX_HELD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._holding = resuming
        self._deadline = clock() + wait_s
        self._skip_before_ns = skip_before_ns
        self._max_held = max_held
        self._clock = clock
        self._held: dict[int, media_pb2.AudioFrame] = {}
        self._first_live: int | None = None  # sequence of the first frame heard while holding
        self._replaying = False  # a frame older than the first live one arrived
        self._floor: int | None = None  # after a resume: older frames came too late
        self._seen: set[int] = set()
        self._order: deque[int] = deque()  # self._seen in arrival order, to forget the oldest
        self.dropped = 0  # repeats dropped (by sequence number)
        self.skipped = 0  # frames the old owner had already transcribed

    @property
    def holding(self) -> bool:
        return self._holding

    def push(self, frame: media_pb2.AudioFrame) -> list[media_pb2.AudioFrame]:
        """The frames to process now, in sequence order (often just ``frame``; none while holding)."""
        seq = frame.sequence
        if not self._holding:
            if seq in self._seen or (self._floor is not None and seq < self._floor):
                self.dropped += 1
                return []
            self._remember(seq)
            return [frame]
        if self._first_live is None:
            self._first_live = seq
        elif seq < self._first_live:
            self._replaying = True
        caught_up = seq + 1 == self._first_live or (self._replaying and seq in self._held)
        if frame.capture_unix_ns and frame.capture_unix_ns < self._skip_before_ns:
            self.skipped += 1
        elif seq in self._held:
            self.dropped += 1
        else:
            self._held[seq] = frame
        if caught_up or self._first_live == 0 or len(self._held) >= self._max_held:
            return self.release()
        return self.poll()

    def poll(self) -> list[media_pb2.AudioFrame]:
        """Release the held frames if the replay did not come in time."""
        if self._holding and self._clock() >= self._deadline:
            return self.release()
        return []

    def release(self) -> list[media_pb2.AudioFrame]:
        """Stop holding: the held frames in sequence order."""
        self._holding = False
        out = [self._held[s] for s in sorted(self._held)]
        self._held.clear()
        if out:
            self._floor = out[0].sequence
        for f in out:
            self._remember(f.sequence)
        return out

    def _remember(self, seq: int) -> None:
        self._seen.add(seq)
        self._order.append(seq)
        if len(self._order) > RECENT:
            self._seen.discard(self._order.popleft())
