"""Test signals for the codec tests: a sine at a given rate and how much of a signal's energy
lies at one frequency."""

from __future__ import annotations

import numpy as np


def sine(freq: float, samples: int, rate: int, start: int = 0, amp: float = 6000.0) -> np.ndarray:
    """``samples`` of a 16-bit sine at ``freq`` Hz, starting at sample ``start`` of the wave."""
    t = (np.arange(samples) + start) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def band_share(pcm: np.ndarray, rate: int, freq: float) -> float:
    """Share of the signal's energy within 50 Hz of ``freq``."""
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    bins = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(spec[np.abs(bins - freq) < 50].sum() / (spec.sum() or 1.0))
