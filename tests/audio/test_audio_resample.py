import numpy as np
import pytest
from phoneagent.audio.resample import StreamResampler, resample
from phoneagent.runtime.errors import InvalidArgument

pytest.importorskip("soxr")

RATE_PAIRS = [(8000, 16000), (16000, 8000), (24000, 8000), (22050, 8000)]


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.argmax(spec)) * rate / pcm.size


def chunks(x: np.ndarray, rate: int, ms: int = 20):
    n = rate * ms // 1000
    for i in range(0, x.size - n + 1, n):
        yield x[i : i + n]


def level_db(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64) / 32768
    return 10 * np.log10(np.mean(x * x) + 1e-12)


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_every_20ms_chunk_yields_about_20ms(in_rate: int, out_rate: int) -> None:
    rs = StreamResampler(in_rate, out_rate)
    x = (tone(440, in_rate, 1.0) * 32767).astype(np.int16)
    expected = out_rate // 50
    sizes = [rs.process(c).size for c in chunks(x, in_rate)]
    # After the first two chunks (filter warm-up), no chunk may be held back for a burst.
    assert all(abs(s - expected) <= 2 for s in sizes[2:]), sizes
    assert sizes[0] >= expected // 2
    total = sum(sizes) + rs.flush().size
    assert abs(total - x.size * out_rate / in_rate) <= 2


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_sine_frequency_and_level_are_preserved(in_rate: int, out_rate: int) -> None:
    rs = StreamResampler(in_rate, out_rate)
    x = tone(1000, in_rate, 1.0, amp=0.5)
    y = np.concatenate([rs.process(c) for c in chunks(x, in_rate)] + [rs.flush()])
    steady = y[out_rate // 10 : -out_rate // 10]
    assert abs(peak_hz(steady, out_rate) - 1000) <= 2
    assert abs(level_db(steady) - 10 * np.log10(0.125)) < 0.5  # a 0.5-amplitude sine is -9 dBFS


def test_downsampling_removes_what_would_alias() -> None:
    # 6 kHz at 24 kHz folds to 2 kHz at 8 kHz without an anti-aliasing filter.
    rs = StreamResampler(24000, 8000)
    y = np.concatenate([rs.process(c) for c in chunks(tone(6000, 24000, 1.0, amp=0.5), 24000)])
    assert level_db(y[800:]) < -9 - 60


def test_upsampling_has_no_strong_images() -> None:
    rs = StreamResampler(8000, 16000)
    y = np.concatenate([rs.process(c) for c in chunks(tone(3000, 8000, 1.0, amp=0.5), 8000)])
    spec = np.abs(np.fft.rfft(y[1600:].astype(np.float64) * np.hanning(y.size - 1600)))
    freqs = np.fft.rfftfreq(y.size - 1600, 1 / 16000)
    image = spec[(freqs > 4800) & (freqs < 5200)].max()  # 8000 - 3000
    assert 20 * np.log10(image / spec.max()) < -50


def test_float_input_and_flush_reuse() -> None:
    rs = StreamResampler(16000, 8000)
    first = np.concatenate([rs.process(c) for c in chunks(tone(500, 16000, 0.2), 16000)] + [rs.flush()])
    second = np.concatenate([rs.process(c) for c in chunks(tone(500, 16000, 0.2), 16000)] + [rs.flush()])
    assert first.dtype == np.int16 and first.size == 1600
    np.testing.assert_array_equal(first, second)  # flush leaves it ready for a fresh stream


def test_same_rate_is_passthrough() -> None:
    rs = StreamResampler(8000, 8000)
    x = np.arange(160, dtype=np.int16)
    np.testing.assert_array_equal(rs.process(x), x)
    assert rs.flush().size == 0


def test_one_shot_resample() -> None:
    y = resample(tone(1000, 22050, 0.5), 22050, 8000)
    assert y.dtype == np.int16 and abs(y.size - 4000) <= 1
    assert abs(peak_hz(y, 8000) - 1000) <= 4
    assert resample(np.zeros(0, dtype=np.int16), 16000, 8000).size == 0


def test_bad_arguments() -> None:
    with pytest.raises(InvalidArgument):
        StreamResampler(0, 8000)
    with pytest.raises(InvalidArgument):
        StreamResampler(8000, 16000).process(np.zeros(160, dtype=np.int32))
    with pytest.raises(InvalidArgument):
        resample(np.zeros((160, 2), dtype=np.int16), 16000, 8000)
