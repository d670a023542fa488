"""Split agent text into pieces the engine renders one at a time.

Kokoro renders a piece whole, so time to first audio grows with the length of the first
piece: the first piece of a reply is its first clause (cut at a comma, semicolon, colon
or dash once a few words are in), or a word limit. Later pieces are sentences; a sentence
too long for one pass is cut at clauses. Numbers ("3.5", "1,200", "415 555 0132") and
abbreviations ("Dr. Patel", "e.g. this") are never split.

Offsets are into the text given, so the edge can report how much of it was heard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class TextChunk:
    text: str
    start: int
    end: int
    # The piece ends a sentence with its mark (the engine gets a sentence pause after it).
    sentence_end: bool


@dataclass(frozen=True)
class ChunkPolicy:
    first_min_words: int = 3
    first_max_words: int = 10
    max_chars: int = 300


# Abbreviations whose period never ends a sentence; and those that end one only before a capital.
_NEVER_END = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "st",
    "mt",
    "e.g",
    "i.e",
    "vs",
    "no",
    "nr",
    "approx",
    "apt",
    "ph.d",
    "fig",
    "cf",
}
_SENTENCE_RE = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
_CLAUSE_RE = re.compile(r"(?:[,;:]|\s[-\u2013\u2014]|[\u2013\u2014])(?=\s)")
_WORD_RE = re.compile(r"\S+")
# A piece that ends a sentence ends with its mark; one without (the dialog may send a first
# sentence in two pieces, the first cut at a phrase) gets a clause's pause, not a sentence's.
_ENDS_SENTENCE = re.compile(r"[.!?\u2026][\"')\]\u2019\u201d]*$")


def _word_before(text: str, pos: int) -> str:
    start = pos
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    return text[start:pos]


def _is_sentence_end(text: str, match: re.Match[str]) -> bool:
    after = text[match.end() :].lstrip()
    if not after:
        return True
    if match.group(0)[0] != ".":
        return True
    word = _word_before(text, match.start()).lstrip("\"'([").lower()
    if word in _NEVER_END or (len(word) == 1 and word.isalpha()):
        return False  # "Dr. Patel", "J. Smith"
    return not after[0].islower()  # "etc. and more" goes on; "a.m. Then" ends


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence, without surrounding whitespace."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in _SENTENCE_RE.finditer(text):
        if _is_sentence_end(text, m):
            spans.append((start, m.end()))
            start = m.end()
    spans.append((start, len(text)))
    return [s for s in (_strip(text, a, b) for a, b in spans) if s[0] < s[1]]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _words(text: str, start: int, end: int) -> list[re.Match[str]]:
    return list(_WORD_RE.finditer(text, start, end))


def _safe_word_cut(words: list[re.Match[str]], limit: int) -> int | None:
    """Index of the word after which to cut at or before ``limit`` words, not between number groups."""
    for i in range(min(limit, len(words) - 1), 0, -1):
        left, right = words[i - 1].group(0), words[i].group(0)
        numbers = any(c.isdigit() for c in left) and any(c.isdigit() for c in right)
        title = left.endswith(".") and (left[:-1].lower() in _NEVER_END or len(left) == 2)
        if not (numbers or title):
            return i
    return None


def _first_cut(text: str, start: int, end: int, policy: ChunkPolicy) -> int | None:
    """Where the short first piece of a sentence ends, or None to keep the sentence whole."""
    words = _words(text, start, end)
    if len(words) <= policy.first_max_words:
        return None
    for m in _CLAUSE_RE.finditer(text, start, end):
        count = sum(1 for w in words if w.start() < m.end())
        if count > policy.first_max_words:
            break
        if count >= policy.first_min_words:
            return m.end()
    cut = _safe_word_cut(words, policy.first_max_words)
    return words[cut - 1].end() if cut else None


def _long_cuts(text: str, start: int, end: int, max_chars: int) -> list[int]:
    """Cut points inside a sentence longer than ``max_chars``: the last clause mark, else a word."""
    cuts: list[int] = []
    pos = start
    while end - pos > max_chars:
        window_end = pos + max_chars
        clauses = [m.end() for m in _CLAUSE_RE.finditer(text, pos, window_end)]
        if clauses:
            cut = clauses[-1]
        else:
            words = _words(text, pos, window_end)
            index = _safe_word_cut(words, len(words) - 1) if len(words) > 1 else None
            cut = words[index - 1].end() if index else window_end
        cuts.append(cut)
        pos = _strip(text, cut, end)[0]
    return cuts


def split_text(text: str, *, first_in_reply: bool, policy: ChunkPolicy | None = None) -> list[TextChunk]:
    """Split one piece of agent text into chunks to synthesise in order."""
    policy = policy or ChunkPolicy()
    chunks: list[TextChunk] = []
    for index, (s_start, s_end) in enumerate(sentence_spans(text)):
        cuts = []
        if first_in_reply and index == 0:
            first = _first_cut(text, s_start, s_end, policy)
            if first is not None:
                cuts.append(first)
        rest = _strip(text, cuts[-1], s_end)[0] if cuts else s_start
        cuts += _long_cuts(text, rest, s_end, policy.max_chars)
        bounds = [s_start, *cuts, s_end]
        for a, b in zip(bounds, bounds[1:], strict=False):
            a, b = _strip(text, a, b)
            if a < b:
                ends = b == s_end and _ENDS_SENTENCE.search(text, a, b) is not None
                chunks.append(TextChunk(text[a:b], a, b, sentence_end=ends))
    return chunks
