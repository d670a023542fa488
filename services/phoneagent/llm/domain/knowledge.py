"""Retrieval over an agent's knowledge documents with local sentence embeddings.

Documents are split by paragraph (a heading is kept as context for the paragraphs
under it). A paragraph is embedded whole and sentence by sentence, and scores as its
best-matching vector, so one fact in a paragraph of several is still found. Vectors
are cached on disk, keyed by the file's sha256, the chunker version and the encoder,
so a restart re-embeds only changed files.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import cache_dir as model_cache_dir

log = logging.getLogger(__name__)
CHUNKER_VERSION = "3"
MAX_WORDS = 120
# A full stop after these ends no sentence ("Dr. Priya Shah"): one title or abbreviation each.
_ABBREVIATIONS = ("Dr", "Mr", "Mrs", "Ms", "Prof", "St", "Ave", "approx", "e.g", "i.e", "vs")
_SENTENCE_END = re.compile("".join(rf"(?<!\b{re.escape(a)}\.)" for a in _ABBREVIATIONS) + r"(?<=[.!?])\s+")


def sentences(text: str) -> list[str]:
    """``text`` cut into sentences, not after a title or a common abbreviation."""
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


class Encoder(Protocol):
    def encode(self, texts: Sequence[str], batch_size: int = 8) -> np.ndarray: ...


@dataclass(frozen=True)
class Chunk:
    source: str
    heading: str
    text: str

    def embed_texts(self) -> list[str]:
        """The paragraph (with its heading) and, when it has several, each sentence."""
        whole = f"{self.heading}: {self.text}" if self.heading else self.text
        parts = sentences(self.text)
        return [whole] + (parts if len(parts) > 1 else [])


@dataclass(frozen=True)
class Passage:
    text: str
    source: str
    heading: str
    score: float


def _split_long(paragraph: str) -> list[str]:
    words = paragraph.split()
    if len(words) <= MAX_WORDS:
        return [paragraph]
    out: list[str] = []
    current: list[str] = []
    for sentence in sentences(paragraph):
        if current and len(" ".join(current).split()) + len(sentence.split()) > MAX_WORDS:
            out.append(" ".join(current))
            current = []
        current.append(sentence)
    if current:
        out.append(" ".join(current))
    return out


def chunk_text(text: str, source: str) -> list[Chunk]:
    """Paragraphs of a plain-text or Markdown document, each with its nearest heading."""
    chunks: list[Chunk] = []
    heading = ""
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        lines = [ln.strip() for ln in block.strip().splitlines() if ln.strip()]
        body: list[str] = []
        for line in lines:
            if line.startswith("#"):
                if body:
                    chunks.extend(Chunk(source, heading, p) for p in _split_long(" ".join(body)))
                    body = []
                heading = line.lstrip("#").strip()
            else:
                body.append(line)
        if body:
            chunks.extend(Chunk(source, heading, p) for p in _split_long(" ".join(body)))
    return chunks


class KnowledgeBase:
    """Top-k search over paragraph embeddings of a fixed set of documents."""

    def __init__(
        self,
        paths: Sequence[Path],
        encoder: Encoder,
        *,
        encoder_id: str = "all-MiniLM-L6-v2",
        cache_dir: Path | None = None,
        extra: Sequence[Chunk] = (),
    ) -> None:
        """``extra``: passages made from configuration rather than documents (opening hours),
        embedded at start-up and never cached."""
        self._encoder = encoder
        self._encoder_id = encoder_id
        self._cache = cache_dir or (model_cache_dir() / "embeddings")
        self.chunks: list[Chunk] = []
        vectors: list[np.ndarray] = []
        owners: list[int] = []  # row of the vector matrix -> index into self.chunks
        for path in paths:
            chunks, vecs = self._load_document(Path(path))
            for chunk in chunks:
                owners.extend([len(self.chunks)] * len(chunk.embed_texts()))
                self.chunks.append(chunk)
            vectors.append(vecs)
        if extra:
            texts = [t for chunk in extra for t in chunk.embed_texts()]
            for chunk in extra:
                owners.extend([len(self.chunks)] * len(chunk.embed_texts()))
                self.chunks.append(chunk)
            vectors.append(np.asarray(self._encoder.encode(texts), dtype=np.float32))
        self._matrix = np.concatenate(vectors) if vectors else np.zeros((0, 384), dtype=np.float32)
        self._owner = np.asarray(owners, dtype=np.int64)
        log.info("knowledge base ready", extra={"documents": len(paths), "chunks": len(self.chunks)})

    def _load_document(self, path: Path) -> tuple[list[Chunk], np.ndarray]:
        try:
            data = path.read_bytes()
        except OSError:
            raise InvalidArgument(f"knowledge document {path.name} cannot be read") from None
        chunks = chunk_text(data.decode("utf-8", errors="replace"), path.name)
        texts = [t for c in chunks for t in c.embed_texts()]
        key = hashlib.sha256(data + f"|{CHUNKER_VERSION}|{self._encoder_id}".encode()).hexdigest()
        cached = self._cache / f"{key}.npy"
        if cached.is_file():
            try:
                vecs = np.load(cached, allow_pickle=False)
                if texts and vecs.ndim == 2 and vecs.shape[0] == len(texts):
                    return chunks, vecs.astype(np.float32)
            except (OSError, ValueError):
                log.warning("embedding cache entry unreadable; recomputing", extra={"document": path.name})
        vecs = self._encoder.encode(texts) if texts else np.zeros((0, 384), np.float32)
        self._store(cached, vecs)
        return chunks, vecs

    def _store(self, target: Path, vecs: np.ndarray) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
            np.save(tmp, vecs, allow_pickle=False)
            os.replace(tmp, target)
        except OSError:
            log.warning("embedding cache not writable", extra={"cache": target.parent.name})

    def search(self, question: str, k: int = 3, min_score: float = 0.2) -> list[Passage]:
        """The ``k`` best paragraphs scoring at least ``min_score`` (cosine similarity)."""
        question = question.strip()
        if not question:
            raise InvalidArgument("question is empty")
        if not self.chunks:
            return []
        q = self._encoder.encode([question])[0]
        scores = np.full(len(self.chunks), -1.0, dtype=np.float32)
        np.maximum.at(scores, self._owner, self._matrix @ q)
        order = np.argsort(-scores, kind="stable")[:k]
        return [
            Passage(self.chunks[i].text, self.chunks[i].source, self.chunks[i].heading, float(scores[i]))
            for i in order
            if scores[i] >= min_score
        ]


def open_knowledge_base(
    paths: Sequence[Path], cache_dir: Path | None = None, extra: Sequence[Chunk] = ()
) -> KnowledgeBase:
    """A knowledge base backed by the numpy MiniLM encoder (raises MissingModelError when absent)."""
    from phoneagent.llm.domain.minilm import MiniLMEncoder

    return KnowledgeBase(paths, MiniLMEncoder(), cache_dir=cache_dir, extra=extra)
