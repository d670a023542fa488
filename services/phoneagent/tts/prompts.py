"""Pre-rendered fixed prompts: the greeting with its AI disclosure, recording words, transfer words.

The texts are the ones the agent says word for word: the agent file's greeting as policy
rewrites it (the disclosure first, :func:`phoneagent.agents.disclosure.enforce_disclosure`),
the recording notice and consent question, and the transfer and take-a-message words
(:mod:`phoneagent.agents.words`).
Each is cached per sentence, keyed by (engine, voice, speed, call rate, sentence text with
its whitespace collapsed), in memory and on disk (raw int16 PCM named by a hash of the
key), so a sentence of a fixed prompt costs no synthesis time however the text arrives: as
one message, split into sentences, or with a reply after it. A
:class:`~phoneagent.tts.stream.TtsStream` given a cache plays every cached sentence of a
request from the cache and synthesises the rest.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phoneagent.agents.disclosure import build_disclosure, enforce_disclosure
from phoneagent.agents.words import CONSENT_PROMPT, NOTICE_TEXT, TAKE_MESSAGE_TEXT, TRANSFER_TEXT
from phoneagent.audio.resample import resample
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import cache_dir
from phoneagent.tts.chunker import sentence_spans
from phoneagent.tts.engines.base import TtsEngine, check_speed, check_voice
from phoneagent.tts.render import synthesize_whole

log = logging.getLogger(__name__)

# Bump when rendering changes (normaliser, pauses, keys) so stale files are not reused.
CACHE_VERSION = "3"


@dataclass(frozen=True)
class FixedPrompts:
    """What the agent says word for word; build it with :meth:`for_agent`."""

    greeting: str  # as policy lets it out: the AI disclosure, then the agent's greeting
    recording_notice: str = NOTICE_TEXT
    consent_prompt: str = CONSENT_PROMPT
    transfer: str = TRANSFER_TEXT
    take_message: str = TAKE_MESSAGE_TEXT

    @classmethod
    def for_agent(cls, greeting: str, disclosure_addition: str = "") -> FixedPrompts:
        """The prompts of an agent whose file has ``greeting`` (policy's PA_DISCLOSURE_ADDITION)."""
        disclosure = build_disclosure(disclosure_addition or None)
        return cls(greeting=enforce_disclosure(greeting, disclosure))

    def texts(self) -> list[str]:
        return [self.greeting, self.recording_notice, self.consent_prompt, self.transfer, self.take_message]

    def sentences(self) -> list[str]:
        """Every sentence of every prompt, each once, greeting first."""
        return list(dict.fromkeys(sentence_key(s) for text in self.texts() for s in sentences(text)))


def sentence_key(text: str) -> str:
    """A sentence as the cache knows it: whitespace collapsed, nothing else changed."""
    return " ".join(text.split())


def sentences(text: str) -> list[str]:
    """The sentences of ``text`` (as :func:`~phoneagent.tts.chunker.sentence_spans` cuts them)."""
    return [text[a:b] for a, b in sentence_spans(text)]


def prompt_key(engine: str, voice: str, speed: float, sample_rate: int, text: str) -> str:
    raw = "\x1f".join([CACHE_VERSION, engine, voice, f"{speed:.3f}", str(sample_rate), sentence_key(text)])
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class PromptCache:
    def __init__(self, engine: TtsEngine, *, sample_rate: int = 8000, directory: Path | None = None) -> None:
        self.engine = engine
        self.sample_rate = sample_rate
        self.directory = directory or cache_dir() / "tts-prompts"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        self.hits = 0  # lookups answered from memory or disk
        self.misses = 0  # sentences rendered

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
        if pcm is not None:
            with self._lock:
                self.hits += 1
        return pcm

    def get(self, text: str, voice: str, speed: float = 1.0) -> np.ndarray:
        """PCM for ``text``, rendering and storing it when not cached yet."""
        if not text.strip():
            raise InvalidArgument("prompt text is empty")
        check_voice(voice, self.engine.voices())
        check_speed(speed)
        pcm = self.lookup(text, voice, speed)
        if pcm is not None:
            return pcm
        with self._lock:
            self.misses += 1
        pcm = self._render(text, voice, speed)
        key = prompt_key(self.engine.name, voice, speed, self.sample_rate, text)
        self._write(key, pcm)
        with self._lock:
            self._memory[key] = pcm
        return pcm

    def prerender(self, texts: FixedPrompts | Iterable[str], voice: str, speed: float = 1.0) -> int:
        """Render every sentence of ``texts`` not cached yet; the number of sentences cached."""
        items = texts.sentences() if isinstance(texts, FixedPrompts) else list(texts)
        count = 0
        for text in items:
            for sentence in sentences(text):
                self.get(sentence, voice, speed)
                count += 1
        return count

    def _render(self, text: str, voice: str, speed: float) -> np.ndarray:
        audio = synthesize_whole(self.engine, text, voice, speed)
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
