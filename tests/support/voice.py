"""A caller's voice for the end-to-end tests: Piper (a neural voice; espeak at 8 kHz is too robotic
for tiny.en), as 16-bit PCM at the rate the test sends."""

from __future__ import annotations

import numpy as np
from phoneagent.audio.resample import resample


def piper_speech(text: str, rate: int) -> np.ndarray:
    """``text`` spoken by Piper's first voice, as int16 PCM at ``rate`` Hz."""
    from phoneagent.tts.engines.base import create_engine

    engine = create_engine("piper")
    engine.load()
    try:
        audio = np.concatenate(list(engine.synthesize(text, engine.voices()[0], 1.0)))
    finally:
        engine.close()
    pcm = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
    return resample(pcm, engine.native_rate, rate)
