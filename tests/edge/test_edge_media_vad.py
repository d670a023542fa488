import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from phoneagent.audio.resample import resample
from phoneagent.edge.media.vad import BargeInVad, VadConfig, VadEvent, VadEventKind
from phoneagent.runtime.errors import InvalidArgument

RATE = 8000
FRAME = 160
SPEECH_DBFS = -20.0


def scaled(x: np.ndarray, dbfs: float) -> np.ndarray:
    rms = np.sqrt(np.mean(x.astype(np.float64) ** 2))
    return x * (10 ** (dbfs / 20) * 32768 / rms)


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    """Steady hiss, slightly low-passed like a phone line."""
    rng = np.random.default_rng(seed)
    n = rng.standard_normal(int(RATE * seconds))
    return scaled(np.convolve(n, np.ones(3) / 3, mode="same"), dbfs)


def voiced(seconds: float, dbfs: float, f0: float = 130.0) -> np.ndarray:
    """A vowel-like harmonic series with 4 Hz syllable-rate amplitude modulation and vibrato."""
    t = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / RATE
    x = sum(np.sin(k * phase) / k for k in range(1, int(3400 / f0)))
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return scaled(x * env, dbfs)


def to_pcm(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)


def run(vad: BargeInVad, pcm: np.ndarray) -> list[VadEvent]:
    events = []
    for i in range(0, pcm.size - FRAME + 1, FRAME):
        ev = vad.process(pcm[i : i + FRAME])
        if ev is not None:
            events.append(ev)
    return events


def kinds(events: list[VadEvent]) -> list[VadEventKind]:
    return [e.kind for e in events]


def background(seconds: float) -> np.ndarray:
    return noise(seconds, SPEECH_DBFS - 20)  # 20 dB SNR against the speech level


def test_steady_noise_at_20db_snr_never_confirms() -> None:
    events = run(BargeInVad(), to_pcm(background(20.0)))
    assert VadEventKind.CONFIRMED not in kinds(events)


def test_voiced_500ms_confirms_within_min_speech_plus_40ms() -> None:
    cfg = VadConfig(min_speech_ms=200)
    x = background(3.0)
    onset = 1.0
    start = int(onset * RATE)
    x[start : start + 4000] += voiced(0.5, SPEECH_DBFS)
    events = run(BargeInVad(cfg), to_pcm(x))
    assert kinds(events) == [VadEventKind.STARTED, VadEventKind.CONFIRMED, VadEventKind.ENDED]
    started, confirmed, ended = events
    assert abs(started.onset_ms - 1000) <= 20
    assert confirmed.at_ms <= 1000 + cfg.min_speech_ms + 40
    assert confirmed.onset_ms == started.onset_ms
    assert abs(ended.at_ms - 1500) <= 40


def test_speech_ms_counts_speech_not_the_hangover_after_it() -> None:
    """What the edge's long-speech barge-in reads: 500 ms of speech stay 500 ms (give or take a
    frame) through the 300 ms of hangover, and 0 once the speech has ended."""
    x = background(3.0)
    x[8000:12000] += voiced(0.5, SPEECH_DBFS)
    vad, seen = BargeInVad(VadConfig(min_speech_ms=200, hangover_ms=300)), []
    for i in range(0, x.size - FRAME + 1, FRAME):
        ev = vad.process(to_pcm(x)[i : i + FRAME])
        seen.append(vad.speech_ms)
        if ev is not None and ev.kind is VadEventKind.ENDED:
            break
    assert 480 <= max(seen) <= 540, max(seen)
    assert seen[-1] == 0.0 and not vad.speaking


def test_click_and_cough_do_not_confirm() -> None:
    x = background(3.0)
    x[4000] += 30000  # line click: one sample
    x[6000:6016] += 12000 * np.hanning(16)  # 2 ms tick
    rng = np.random.default_rng(5)
    burst = rng.standard_normal(480) * np.exp(-np.arange(480) / 150)  # 60 ms cough-like burst
    x[12000:12480] += scaled(burst, SPEECH_DBFS + 6)
    x[16000:16480] += voiced(0.06, SPEECH_DBFS + 6)  # a 60 ms grunt
    events = run(BargeInVad(), to_pcm(x))
    assert VadEventKind.CONFIRMED not in kinds(events)
    assert VadEventKind.STARTED in kinds(events)  # something was noticed, and rejected
    assert kinds(events).count(VadEventKind.STARTED) == kinds(events).count(VadEventKind.REJECTED)


def test_speech_after_loud_start_of_call_still_detected() -> None:
    # The floor is learnt from the first frames even when they are much louder than the default.
    x = noise(4.0, -35.0)
    x[16000:20000] += voiced(0.5, -15.0)
    events = run(BargeInVad(), to_pcm(x))
    assert kinds(events)[:2] == [VadEventKind.STARTED, VadEventKind.CONFIRMED]
    assert VadEventKind.CONFIRMED not in kinds(events[2:])


def test_digital_silence_and_bad_frames() -> None:
    vad = BargeInVad()
    assert run(vad, np.zeros(RATE * 2, dtype=np.int16)) == []
    with pytest.raises(InvalidArgument):
        vad.process(np.zeros(100, dtype=np.int16))
    with pytest.raises(InvalidArgument):
        vad.process(np.zeros(FRAME, dtype=np.float32))
    with pytest.raises(InvalidArgument):
        VadConfig(start_db=3.0, keep_db=6.0)


def espeak_8k(tmp_path: Path, text: str) -> np.ndarray:
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), text], check=True, timeout=30, capture_output=True)
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return resample(pcm, rate, RATE).astype(np.float64)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_synthetic_speech_confirms_quickly(tmp_path: Path) -> None:
    speech = espeak_8k(tmp_path, "Hello, I would like to speak to someone about my bill.")
    levels = [np.sqrt(np.mean(speech[i : i + FRAME] ** 2)) for i in range(0, speech.size - FRAME, FRAME)]
    first = next(i for i, v in enumerate(levels) if v > 0.1 * max(levels))  # 20 dB under the peak
    active = speech[np.abs(speech) > 0]
    speech = speech * (10 ** (SPEECH_DBFS / 20) * 32768 / np.sqrt(np.mean(active**2)))
    x = background(1.0 + speech.size / RATE + 1.0)
    x[RATE : RATE + speech.size] += speech
    events = run(BargeInVad(), to_pcm(x))
    confirmed = [e for e in events if e.kind is VadEventKind.CONFIRMED]
    assert confirmed, kinds(events)
    onset_ms = 1000 + first * 20
    # The utterance opens with a breathy "h" (not voiced, so not counted): allow 100 ms for it.
    assert onset_ms <= confirmed[0].onset_ms <= onset_ms + 100
    assert confirmed[0].at_ms <= confirmed[0].onset_ms + 200 + 40
    assert kinds(events)[-1] is VadEventKind.ENDED
