"""G.722 through the ``g722`` package (stateful per stream, 16 kHz audio on an 8000 Hz clock) and
the RNNoise denoiser on a stream of 20 ms frames at 8 and 16 kHz."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import pytest
from phoneagent.audio.denoise import Denoiser
from phoneagent.audio.g711 import PCMU
from phoneagent.audio.g722 import G722Codec, codec_rate, open_codec
from phoneagent.audio.resample import resample
from phoneagent.runtime.errors import InvalidArgument
from support.signals import band_share, sine


def test_g722_carries_wideband_audio_frame_by_frame() -> None:
    enc, dec = G722Codec(), G722Codec()
    frames = [enc.encode(sine(6000, 320, 16000, 320 * i)) for i in range(25)]
    assert {len(f) for f in frames} == {160}  # 64 kbit/s: one byte per 8000 Hz clock tick
    audio = np.concatenate([dec.decode(f) for f in frames])
    assert audio.dtype == np.int16 and len(audio) == 25 * 320
    assert band_share(audio[1600:], 16000, 6000) > 0.9  # above G.711's band, kept
    assert (enc.sample_rate, enc.clock_rate, enc.payload_type) == (16000, 8000, 9)
    with pytest.raises(InvalidArgument):
        enc.encode(np.zeros(3, np.int16))


def test_each_g722_stream_gets_its_own_state_and_g711_is_shared() -> None:
    a, b = open_codec(9), open_codec("G722")
    assert isinstance(a, G722Codec) and isinstance(b, G722Codec) and a is not b
    assert open_codec(0) is PCMU and open_codec("pcmu") is PCMU
    assert (codec_rate("G722"), codec_rate("PCMU")) == (16000, 8000)
    # Peeking at a frame (the jitter buffer's level check) leaves the decoder's sequence alone.
    enc = G722Codec()
    frames = [enc.encode(sine(700, 320, 16000, 320 * i)) for i in range(5)]
    ref, peeked = G722Codec(), G722Codec()
    expected = [ref.decode(f) for f in frames]
    for i, f in enumerate(frames):
        peeked.peek(frames[-1])
        np.testing.assert_array_equal(peeked.decode(f), expected[i])


@pytest.mark.parametrize("rate", [8000, 16000])
def test_denoiser_removes_steady_noise_and_keeps_frame_size(rate: int) -> None:
    rng = np.random.default_rng(7)
    n = rate // 50
    noise = rng.normal(0, 1500, rate * 3).astype(np.int16)
    d = Denoiser(rate)
    out = [d.process(noise[i : i + n]) for i in range(0, len(noise), n)]
    assert {len(o) for o in out} == {n} and all(o.dtype == np.int16 for o in out)
    cleaned = np.concatenate(out)[rate:]  # after a second to adapt
    assert cleaned.std() < noise.std() / 30  # more than 29 dB quieter
    d.close()
    with pytest.raises(RuntimeError):
        d.process(noise[:n])


def espeak(text: str, rate: int) -> np.ndarray:
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.fail("espeak-ng is required: apt-get install -y espeak-ng")
    out = subprocess.run([exe, "-v", "en-us", "--stdout", text], capture_output=True, check=True, timeout=30)
    with wave.open(io.BytesIO(out.stdout)) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return resample(pcm, w.getframerate(), rate)


def test_denoiser_keeps_a_voice_and_delays_it_about_32_ms() -> None:
    rate, n = 8000, 160
    pcm = espeak("the quick brown fox jumps over the lazy dog", rate)
    d = Denoiser(rate)
    out = np.concatenate([d.process(pcm[i : i + n]) for i in range(0, len(pcm) - n + 1, n)])
    lag = int(np.argmax(np.correlate(out[:rate].astype(float), pcm[:rate].astype(float), "full"))) - (
        rate - 1
    )
    assert 16 * 8 <= lag <= 48 * 8  # 16-48 ms
    kept, said = out[lag:].astype(float), pcm[: len(out) - lag].astype(float)
    assert kept.std() / said.std() > 0.8 and np.corrcoef(kept, said)[0, 1] > 0.9
