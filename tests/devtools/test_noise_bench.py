"""The noise benchmark's pieces: generated noises have the character their names promise, and the
mix puts the caller's voice at the asked SNR before the phone line."""

from __future__ import annotations

import numpy as np
import pytest
from phoneagent.devtools.noise_bench import Script, car, mix, parse, street

RATE = 8000


def share_below(x: np.ndarray, hz: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    return float(spec[np.fft.rfftfreq(len(x), 1 / RATE) < hz].sum() / spec.sum())


def test_car_noise_is_low_rumble_and_street_noise_is_broader_and_uneven() -> None:
    rng = np.random.default_rng(0)
    n = RATE * 10
    c, s = car(n, RATE, rng), street(n, RATE, rng)
    assert len(c) == len(s) == n and np.isfinite(c).all() and np.isfinite(s).all()
    assert share_below(c, 500) > 0.8
    assert share_below(s, 500) < share_below(c, 500)
    levels = [s[i : i + RATE // 2].std() for i in range(0, n, RATE // 2)]
    assert max(levels) > 2 * min(levels)  # vehicles pass, horns sound: not a steady hiss


@pytest.mark.parametrize("snr", [5.0, 15.0])
def test_mix_sets_the_speech_to_noise_ratio(snr: float) -> None:
    t = np.arange(RATE * 4) / RATE
    voice = np.where((t > 1) & (t < 3), 8000 * np.sin(2 * np.pi * 300 * t), 0.0)
    noise = np.random.default_rng(1).normal(0, 1, len(t))
    line = mix(Script(voice, [(1.0, 3.0)], ["x"]), noise, snr).astype(float)
    speech_part, noise_part = line[RATE + 100 : 3 * RATE - 100], line[: RATE - 100]
    measured = 10 * np.log10(np.mean(speech_part**2) / np.mean(noise_part**2) - 1)
    assert abs(measured - snr) < 1.0


def test_arguments_are_checked() -> None:
    assert parse(["--noise", "car", "--snr", "10"]).snr == [10.0]
    with pytest.raises(SystemExit):
        parse(["--noise", "rain"])
