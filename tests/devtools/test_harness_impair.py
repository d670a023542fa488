"""Impairments are deterministic for a seed and have the configured statistics."""

from __future__ import annotations

import numpy as np
import pytest
from phoneagent.devtools.harness.impair import (
    SPEECH_DBFS,
    Impairer,
    Impairments,
    active_rms,
    dbfs_to_rms,
    measured_snr_db,
    normalise_speech,
)
from phoneagent.runtime.errors import InvalidArgument


def _speech(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(8000 * seconds)) / 8000
    tone = 6000 * np.sin(2 * np.pi * 300 * t) * (np.sin(2 * np.pi * 2 * t) > 0)  # bursts and pauses
    return normalise_speech(tone.astype(np.int16))


def test_same_seed_same_decisions_different_seed_different() -> None:
    imp = Impairments(jitter_ms=40, loss_pct=10, snr_db=15, seed=7)
    a, b, c = Impairer(imp), Impairer(imp), Impairer(Impairments(jitter_ms=40, loss_pct=10, seed=8))
    fa = [a.packet() for _ in range(500)]
    assert fa == [b.packet() for _ in range(500)]
    assert fa != [c.packet() for _ in range(500)]
    pcm = _speech(0.5)
    assert np.array_equal(a.add_noise(pcm), b.add_noise(pcm))


def test_loss_rate_and_jitter_within_tolerance() -> None:
    imp = Impairer(Impairments(jitter_ms=60, loss_pct=5, seed=1))
    for _ in range(20000):
        imp.packet()
    assert imp.stats.loss_rate == pytest.approx(0.05, abs=0.006)
    delays = np.array(imp.stats.delays_s)
    assert delays.min() >= 0 and delays.max() <= 0.060
    assert delays.mean() == pytest.approx(0.030, abs=0.002)


def test_no_impairment_is_transparent() -> None:
    imp = Impairer(Impairments())
    assert all(not f.drop and f.delay_s == 0 for f in (imp.packet() for _ in range(100)))
    pcm = _speech(0.3)
    assert np.array_equal(imp.add_noise(pcm), pcm)


@pytest.mark.parametrize("snr", [5.0, 10.0, 20.0])
def test_noise_at_the_requested_snr(snr: float) -> None:
    clean = _speech()
    assert 20 * np.log10(active_rms(clean) / 32768) == pytest.approx(SPEECH_DBFS, abs=0.5)
    noisy = Impairer(Impairments(snr_db=snr, seed=3)).add_noise(clean)
    assert measured_snr_db(clean, noisy) == pytest.approx(snr, abs=0.5)


def test_invalid_settings_are_refused() -> None:
    for bad in (Impairments(loss_pct=100), Impairments(jitter_ms=-1), Impairments(snr_db=200)):
        with pytest.raises(InvalidArgument):
            bad.validate()
    assert dbfs_to_rms(0) == pytest.approx(32768)
