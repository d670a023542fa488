"""Cut resampled speech into fixed 20 ms frames, each tagged with how much text it completes.

Every sample carries the text offset that has been spoken once that sample is played
(estimated per word, in proportion to the audio of its chunk); a frame reports the value
at its last sample. The last frame of a sentence is held back until the sentence ends,
so it can be marked as the last one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

_WORD_END = re.compile(r"\S(?=\s|$)")


@dataclass(frozen=True)
class Frame:
    pcm: bytes
    text_start: int
    text_end: int


def coverage(samples: int, text: str, start: int, end: int) -> npt.NDArray[np.int32]:
    """Per-sample text offset spoken so far, for ``samples`` samples saying ``text[start:end]``.

    Offsets advance word by word in proportion to the audio; the last sample covers ``end``.
    """
    if samples <= 0:
        return np.zeros(0, dtype=np.int32)
    ends = np.array([m.end() for m in _WORD_END.finditer(text, start, end)] or [end], dtype=np.int32)
    chars = start + (np.arange(1, samples + 1, dtype=np.float64) / samples) * (end - start)
    # Last word end reached at each sample (start while the first word is being said).
    idx = np.searchsorted(ends, chars, side="right") - 1
    out = np.where(idx >= 0, ends[np.clip(idx, 0, None)], start).astype(np.int32)
    out[-1] = end
    return out


class Framer:
    def __init__(self, frame_samples: int) -> None:
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        self.frame_samples = frame_samples
        self._pcm = np.zeros(0, dtype=np.int16)
        self._marks = np.zeros(0, dtype=np.int32)
        self._spoken = 0

    def reset(self) -> None:
        self._pcm = np.zeros(0, dtype=np.int16)
        self._marks = np.zeros(0, dtype=np.int32)
        self._spoken = 0

    def push(self, pcm: npt.NDArray[np.int16], marks: npt.NDArray[np.int32] | int) -> list[Frame]:
        """Add samples (with their text marks, or one mark for all) and return whole frames ready.

        One frame's worth or more is always kept back for :meth:`finish`.
        """
        if isinstance(marks, int):
            marks = np.full(len(pcm), max(marks, self._last_mark()), dtype=np.int32)
        self._pcm = np.concatenate((self._pcm, pcm.astype(np.int16, copy=False)))
        self._marks = np.concatenate((self._marks, marks.astype(np.int32, copy=False)))
        ready = (len(self._pcm) - 1) // self.frame_samples
        return self._take(ready)

    def finish(self) -> list[Frame]:
        """Pad what is left with silence to whole frames and return them (at least one frame)."""
        n = self.frame_samples
        pad = (-len(self._pcm)) % n if len(self._pcm) else n
        if pad:
            self.push(np.zeros(pad, dtype=np.int16), self._last_mark())
        frames = self._take(len(self._pcm) // n)
        self.reset()
        return frames

    def _last_mark(self) -> int:
        return int(self._marks[-1]) if len(self._marks) else self._spoken

    def _take(self, count: int) -> list[Frame]:
        n = self.frame_samples
        frames = []
        for i in range(count):
            end_mark = int(self._marks[(i + 1) * n - 1])
            frames.append(Frame(self._pcm[i * n : (i + 1) * n].tobytes(), self._spoken, end_mark))
            self._spoken = end_mark
        self._pcm = self._pcm[count * n :]
        self._marks = self._marks[count * n :]
        return frames
