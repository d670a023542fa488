"""Fixed prompts rendered once, then served from memory, from disk, and by the stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.tts.engines.base import TtsEngine
from phoneagent.tts.prompts import PromptCache, prompt_key
from phoneagent.tts.stream import SpeechOut, SpeechRequest, TtsStream

pytestmark = pytest.mark.slow


def test_prompt_is_rendered_once_then_hit_in_memory_and_on_disk(
    piper_engine: TtsEngine, tmp_path: Path
) -> None:
    voice = piper_engine.voices()[0]
    cache = PromptCache(piper_engine, sample_rate=8000, directory=tmp_path)
    prompts = ["Hello, you have reached the clinic.", "One moment please. I will check."]
    assert cache.prerender(prompts, voice) == 3  # cached sentence by sentence
    assert cache.misses == 3 and cache.hits == 0
    assert len(list(tmp_path.glob("*.pcm"))) == 3
    greeting = cache.get(prompts[0], voice)
    assert cache.hits == 1
    assert cache.lookup("Hello,  you have reached\nthe clinic. ", voice) is greeting  # whitespace-blind key
    assert greeting.dtype == np.int16 and 1.0 < greeting.size / 8000 < 5.0
    assert np.sqrt(np.mean(greeting.astype(np.float64) ** 2)) > 300

    fresh = PromptCache(piper_engine, sample_rate=8000, directory=tmp_path)  # a restarted service
    assert np.array_equal(fresh.get(prompts[0], voice), greeting)
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


async def test_stream_plays_cached_sentences_and_synthesises_the_rest(
    piper_engine: TtsEngine, tmp_path: Path
) -> None:
    voice = piper_engine.voices()[0]
    cache = PromptCache(piper_engine, sample_rate=8000, directory=tmp_path)
    notice = "This call may be recorded."
    pcm = cache.get(notice, voice)
    text = f"{notice} Your appointment is on Monday at noon."
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
    assert cache.hits == 1 and cache.misses == 1  # the first sentence came from the cache
    played = np.frombuffer(b"".join(c.pcm for c in chunks), dtype=np.int16)
    assert np.array_equal(played[: pcm.size], pcm)
    pause = played[pcm.size : pcm.size + 1600]
    assert pause.size == 1600 and not pause.any()  # the sentence pause, then the synthesised sentence
    rest = played[pcm.size + 1600 :].astype(np.float64)
    assert rest.size > 8000 and np.sqrt(np.mean(rest**2)) > 300
    assert chunks[-1].text_end == len(text)
    covered = [c.text_end for c in chunks]
    assert covered == sorted(covered) and len(notice) in covered  # offsets advance through both parts
