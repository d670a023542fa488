"""Pre-rendered fixed prompts: greeting, AI disclosure, recording notice, hold message.

Rendered once per (engine, voice, speed, call rate, text) and kept in memory and on disk
(raw int16 PCM named by a hash of that key), so a fixed prompt costs no synthesis time
at the start of a call. A :class:`~phoneagent.tts.stream.TtsStream` given a cache plays a
request whose text matches a cached prompt from the cache.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phoneagent.audio.resample import resample
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import cache_dir
from phoneagent.tts.chunker import split_text
from phoneagent.tts.engines.base import TtsEngine, check_speed, check_voice
from phoneagent.tts.normalize import normalize

log = logging.getLogger(__name__)

# Bump when rendering changes (normaliser, pauses) so stale files are not reused.
CACHE_VERSION = "1"
SENTENCE_PAUSE_S = 0.2


@dataclass(frozen=True)
class FixedPrompts:
    greeting: str = "Hello, thanks for calling. How can I help you today?"
    ai_disclosure: str = "Just so you know, I'm an automated assistant, not a person."
    recording_notice: str = "This call may be recorded for quality and training purposes."
    hold: str = "Please hold for a moment while I look into that."

    def texts(self) -> list[str]:
        return [self.greeting, self.ai_disclosure, self.recording_notice, self.hold]


def prompt_key(engine: str, voice: str, speed: float, sample_rate: int, text: str) -> str:
    raw = "\x1f".join([CACHE_VERSION, engine, voice, f"{speed:.3f}", str(sample_rate), text])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class PromptCache:
    def __init__(self, engine: TtsEngine, *, sample_rate: int = 8000, directory: Path | None = None) -> None:
        self.engine = engine
        self.sample_rate = sample_rate
        self.directory = directory or cache_dir() / "tts-prompts"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def lookup(self, text: str, voice: str, speed: float = 1.0) -> np.ndarray | None:
        """Cached int16 PCM at the cache's rate for ``text``, from memory or disk; None if absent."""
        key = prompt_key(self.engine.name, voice, speed, self.sample_rate, text)
        with self._lock:
            pcm = self._memory.get(key)
        if pcm is None:
            pcm = self._read(key)
            if pcm is not None:
                with self._lock:
                    self._memory[key] = pcm
        return pcm

    def get(self, text: str, voice: str, speed: float = 1.0) -> np.ndarray:
        """PCM for ``text``, rendering and storing it when not cached yet."""
        if not text.strip():
            raise InvalidArgument("prompt text is empty")
        check_voice(voice, self.engine.voices())
        check_speed(speed)
        pcm = self.lookup(text, voice, speed)
        if pcm is not None:
            self.hits += 1
            return pcm
        self.misses += 1
        pcm = self._render(text, voice, speed)
        key = prompt_key(self.engine.name, voice, speed, self.sample_rate, text)
        self._write(key, pcm)
        with self._lock:
            self._memory[key] = pcm
        return pcm

    def prerender(self, prompts: FixedPrompts, voice: str, speed: float = 1.0) -> None:
        for text in prompts.texts():
            self.get(text, voice, speed)

    def _render(self, text: str, voice: str, speed: float) -> np.ndarray:
        parts: list[np.ndarray] = []
        pause = np.zeros(int(SENTENCE_PAUSE_S * self.engine.native_rate), dtype=np.float32)
        for chunk in split_text(text, first_in_reply=False):
            parts.extend(self.engine.synthesize(normalize(chunk.text), voice, speed))
            parts.append(pause)
        audio = np.concatenate(parts[:-1]) if len(parts) > 1 else np.zeros(0, dtype=np.float32)
        log.info(
            "tts prompt rendered",
            extra={"engine": self.engine.name, "seconds": audio.size / self.engine.native_rate},
        )
        return resample(audio, self.engine.native_rate, self.sample_rate)

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.pcm"

    def _read(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if not data or len(data) % 2:
            log.warning("tts prompt cache file unreadable", extra={"key": key[:12]})
            return None
        return np.frombuffer(data, dtype="<i2").copy()

    def _write(self, key: str, pcm: np.ndarray) -> None:
        path = self._path(key)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.{threading.get_ident()}")
        try:
            tmp.write_bytes(pcm.astype("<i2").tobytes())
            os.replace(tmp, path)
        except OSError:
            log.warning("tts prompt cache not writable", extra={"key": key[:12]})
        finally:
            if tmp.exists():
                tmp.unlink()
