"""Fixed prompts rendered once, then served from memory, from disk, and by the stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.tts.engines.base import TtsEngine
from phoneagent.tts.prompts import FixedPrompts, PromptCache, prompt_key
from phoneagent.tts.stream import SpeechOut, SpeechRequest, TtsStream

pytestmark = pytest.mark.slow


def test_prompt_is_rendered_once_then_hit_in_memory_and_on_disk(
    piper_engine: TtsEngine, tmp_path: Path
) -> None:
    voice = piper_engine.voices()[0]
    cache = PromptCache(piper_engine, sample_rate=8000, directory=tmp_path)
    prompts = FixedPrompts(greeting="Hello, you have reached the clinic.", hold="One moment please.")
    cache.prerender(prompts, voice)
    assert cache.misses == 4 and cache.hits == 0
    assert len(list(tmp_path.glob("*.pcm"))) == 4
    greeting = cache.get(prompts.greeting, voice)
    assert cache.hits == 1
    assert greeting.dtype == np.int16 and 1.0 < greeting.size / 8000 < 5.0
    assert np.sqrt(np.mean(greeting.astype(np.float64) ** 2)) > 300

    fresh = PromptCache(piper_engine, sample_rate=8000, directory=tmp_path)  # a restarted service
    assert np.array_equal(fresh.get(prompts.greeting, voice), greeting)
    assert fresh.hits == 1 and fresh.misses == 0


def test_key_separates_engine_voice_rate_and_text() -> None:
    base = prompt_key("kokoro", "af_heart", 1.0, 8000, "Hello.")
    others = [
        prompt_key("piper", "af_heart", 1.0, 8000, "Hello."),
        prompt_key("kokoro", "af_bella", 1.0, 8000, "Hello."),
        prompt_key("kokoro", "af_heart", 1.0, 16000, "Hello."),
        prompt_key("kokoro", "af_heart", 1.2, 8000, "Hello."),
        prompt_key("kokoro", "af_heart", 1.0, 8000, "Hello!"),
    ]
    assert base not in others and len(set(others)) == len(others)


def test_corrupt_cache_file_is_rendered_again(piper_engine: TtsEngine, tmp_path: Path) -> None:
    voice = piper_engine.voices()[0]
    key = prompt_key(piper_engine.name, voice, 1.0, 8000, "Goodbye.")
    (tmp_path / f"{key}.pcm").write_bytes(b"\x01")  # odd length: not PCM
    cache = PromptCache(piper_engine, sample_rate=8000, directory=tmp_path)
    assert cache.get("Goodbye.", voice).size > 1000 and cache.misses == 1
    with pytest.raises(PhoneAgentError) as err:
        cache.get("  ", voice)
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT


async def test_stream_plays_a_cached_prompt(piper_engine: TtsEngine, tmp_path: Path) -> None:
    voice = piper_engine.voices()[0]
    cache = PromptCache(piper_engine, sample_rate=8000, directory=tmp_path)
    text = "This call may be recorded."
    pcm = cache.get(text, voice)
    stream = TtsStream(piper_engine, voice=voice, prompts=cache)
    try:
        stream.submit(SpeechRequest(0, 0, 0, text, final=True))
        chunks: list[SpeechOut] = []
        while not chunks or not chunks[-1].last_in_generation:
            item = await asyncio.wait_for(stream.next(), 30)
            assert isinstance(item, SpeechOut)
            chunks.append(item)
    finally:
        await stream.close()
    played = np.frombuffer(b"".join(c.pcm for c in chunks), dtype=np.int16)
    assert np.array_equal(played[: pcm.size], pcm)  # exactly the cached audio, then silence padding
    assert not played[pcm.size :].any() and played.size - pcm.size < 160
    assert chunks[-1].text_end == len(text)
    with pytest.raises(PhoneAgentError):
        TtsStream(piper_engine, voice=voice, sample_rate=16000, prompts=cache)
