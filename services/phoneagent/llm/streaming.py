"""Split a stream of LLM text pieces into speakable chunks for TTS.

Speech synthesis latency grows with the length of its first input, so the first chunk
is released as early as it can be said naturally: at the first clause break (comma,
semicolon or colon) once it holds at least ``first_clause_min_words`` words, or at the
first sentence end. After that, whole sentences are released.

A boundary is only taken once the character after it has arrived, which is what keeps
decimals ("3.5"), times ("3:30"), thousands ("1,000") and abbreviations ("Dr. Lee",
"e.g. Monday") in one piece. Whatever is left is released by :meth:`SentenceSplitter.flush`.
"""

from __future__ import annotations

import enum
import re

# Sentence end (with closing quotes or brackets) or a clause mark, each followed by white space;
# or a line break, which ends a list item or a line of a spoken list.
_BOUNDARY = re.compile(r"[.!?\u2026]+[\"'\u2019\u201d)\]]*(?=\s)|[,;:](?=\s)|\n")
_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*|\d+)$")
_WORD = re.compile(r"[\w'\u2019-]+")

# Abbreviations after which a period never ends a sentence.
_NEVER_END = frozenset(
    {
        "dr",
        "mr",
        "mrs",
        "ms",
        "prof",
        "st",
        "sgt",
        "capt",
        "gen",
        "rev",
        "hon",
        "e.g",
        "i.e",
        "vs",
        "cf",
        "approx",
        "dept",
        "mt",
        "ave",
        "apt",
        "fig",
    }
)
# Abbreviations that end a sentence only when the next word starts with a capital letter.
_END_IF_CAPITAL = frozenset({"a.m", "p.m", "etc", "inc", "ltd", "co", "jr", "sr", "corp"})
# Abbreviations that never end a sentence before a number ("No. 5", "Ext. 12").
_NOT_BEFORE_DIGIT = frozenset({"no", "nos", "ext", "tel", "vol", "pt", "rm"})


class _Verdict(enum.Enum):
    CUT = 1
    SKIP = 2
    WAIT = 3


class SentenceSplitter:
    """Incremental splitter; one instance per reply (or call :meth:`reset` between replies)."""

    def __init__(self, *, first_clause_min_words: int = 4) -> None:
        if first_clause_min_words < 1:
            raise ValueError("first_clause_min_words must be at least 1")
        self._min_words = first_clause_min_words
        self._buf = ""
        self._emitted = False

    def reset(self) -> None:
        self._buf = ""
        self._emitted = False

    @property
    def pending(self) -> str:
        """Text received but not yet released."""
        return self._buf

    def push(self, text: str) -> list[str]:
        """Add a piece of streamed text; return the chunks that are now complete."""
        self._buf += text
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """End of the reply: release everything still buffered."""
        out = self._drain(final=True)
        rest = self._buf.strip()
        self._buf = ""
        if rest:
            out.append(rest)
            self._emitted = True
        return out

    def _drain(self, *, final: bool) -> list[str]:
        out: list[str] = []
        while (cut := self._find_cut(final)) is not None:
            piece = self._buf[:cut].strip()
            self._buf = self._buf[cut:].lstrip()
            if piece:
                out.append(piece)
                self._emitted = True
        return out

    def _find_cut(self, final: bool) -> int | None:
        for match in _BOUNDARY.finditer(self._buf):
            verdict = self._judge(match, final)
            if verdict is _Verdict.CUT:
                return match.end()
            if verdict is _Verdict.WAIT:
                return None
        return None

    def _judge(self, match: re.Match[str], final: bool) -> _Verdict:
        mark = match.group(0)
        before = self._buf[: match.start()]
        if mark == "\n":
            return _Verdict.CUT if before.strip() else _Verdict.SKIP
        if mark in ",;:":
            if self._emitted or len(_WORD.findall(before)) < self._min_words:
                return _Verdict.SKIP
            return _Verdict.CUT
        if mark.rstrip("\"'\u2019\u201d)]") != ".":
            return _Verdict.CUT  # "!", "?", "...", "?!"
        return self._judge_period(before, match.end(), final)

    def _judge_period(self, before: str, end: int, final: bool) -> _Verdict:
        found = _LAST_WORD.search(before)
        if found is None:
            return _Verdict.CUT
        word = found.group(1)
        lower = word.lower().rstrip(".")
        if lower in _NEVER_END:
            return _Verdict.SKIP
        if len(word) == 1 and word.isupper():
            return _Verdict.SKIP  # an initial: "J. Smith"
        if word.isdigit() and not before[: found.start()].strip(" \t").rsplit("\n", 1)[-1].strip():
            return _Verdict.SKIP  # a list marker at the start of a line: "1. First"
        if lower in _END_IF_CAPITAL or lower in _NOT_BEFORE_DIGIT:
            following = self._buf[end:].lstrip()
            if not following:
                return _Verdict.CUT if final else _Verdict.WAIT
            if lower in _NOT_BEFORE_DIGIT:
                return _Verdict.SKIP if following[0].isdigit() else _Verdict.CUT
            return _Verdict.CUT if following[0].isupper() else _Verdict.SKIP
        return _Verdict.CUT


def split_text(text: str, *, first_clause_min_words: int = 4) -> list[str]:
    """Split a complete text the way a stream of it would be split."""
    splitter = SentenceSplitter(first_clause_min_words=first_clause_min_words)
    return splitter.push(text) + splitter.flush()
