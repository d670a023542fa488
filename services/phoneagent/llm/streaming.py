"""Split a stream of LLM text pieces into speakable chunks for TTS.

Speech synthesis latency grows with the length of its first input, so the first chunk
is released as early as it can be said naturally: at the first clause break (comma,
semicolon or colon) once it holds at least ``first_clause_min_words`` words, or at the
first sentence end. With ``first_max_words``, a first sentence without an early clause
break is also cut at a phrase boundary: before a word that opens a phrase ("at", "with",
"because", ...) once ``first_phrase_min_words`` words are in, else after ``first_max_words``
words (never between the groups of a number, after "Dr." or after "the"). After that, whole
sentences are released.

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

FIRST_PHRASE_MIN_WORDS = 4  # words in before a first sentence is cut at a phrase opener
FIRST_MAX_WORDS = 8  # the service's default: words after which a first sentence is cut anyway

_TOKEN = re.compile(r"\S+")
# Words that open a phrase: the first chunk may end just before one (prepositions, conjunctions,
# relatives), where a speaker could pause too.
_PHRASE_START = frozenset(
    """
    and but or so because since although though unless until while if when where whereas which who
    whom whose to for with without at on in from by about into onto over under between after before
    during including except near behind above below across within per via
    """.split()
)
# Words a phrase cannot end on: articles, possessives, and the phrase openers themselves.
_NO_CUT_AFTER = (
    frozenset("a an the this that these those my your his her its our their some any no every each".split())
    | _PHRASE_START
)

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

    def __init__(
        self,
        *,
        first_clause_min_words: int = 4,
        first_phrase_min_words: int = FIRST_PHRASE_MIN_WORDS,
        first_max_words: int | None = None,
    ) -> None:
        if first_clause_min_words < 1 or first_phrase_min_words < 1:
            raise ValueError("first_clause_min_words and first_phrase_min_words must be at least 1")
        if first_max_words is not None and first_max_words < first_phrase_min_words:
            raise ValueError("first_max_words must be at least first_phrase_min_words")
        self._min_words = first_clause_min_words
        self._phrase_min = first_phrase_min_words
        self._max_words = first_max_words
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
        if self._emitted or final or self._max_words is None:
            return None
        return self._phrase_cut(self._max_words)

    def _phrase_cut(self, max_words: int) -> int | None:
        """Where a first sentence with no early clause break may be cut: before a phrase opener
        once enough words are in, else after ``max_words`` words. Only words followed by white
        space count (the last one may still be growing: "to" could become "today")."""
        words = list(_TOKEN.finditer(self._buf))
        complete = len(words) if self._buf[-1:].isspace() else len(words) - 1
        for i in range(self._phrase_min, complete):
            left, right = words[i - 1].group(0), words[i].group(0)
            if _cuttable(left, right) and (_bare(right) in _PHRASE_START or i >= max_words):
                return words[i].start()
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


def _bare(word: str) -> str:
    return word.strip("\"'\u2018\u2019\u201c\u201d()[]").lower()


def _cuttable(left: str, right: str) -> bool:
    """Whether a chunk may end between ``left`` and ``right``."""
    if any(c.isdigit() for c in left) and any(c.isdigit() for c in right):
        return False  # "415 555", "10 30"
    if left.endswith(".") or left[-1:] in ",;:":
        return False  # "Dr. Lee", "a.m. on", and a clause mark the boundary rules passed over
    if left.endswith("-") or right.startswith("-"):
        return False
    return _bare(left) not in _NO_CUT_AFTER


def split_text(text: str, *, first_clause_min_words: int = 4) -> list[str]:
    """Split a complete text the way a stream of it would be split."""
    splitter = SentenceSplitter(first_clause_min_words=first_clause_min_words)
    return splitter.push(text) + splitter.flush()
