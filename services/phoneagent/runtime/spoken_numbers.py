"""Numbers as a recogniser writes them when a caller says them: digit words, number words,
"double five", fillers between the digits. :func:`digit_runs` finds such runs in a transcript
and :func:`spoken_digits` reads one back as digits (used by redaction and by caller checks)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

DIGIT_WORDS = {
    "zero": "0",
    "oh": "0",
    "o": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "niner": "9",
}
_TEENS = {
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "thirteen": "13",
    "fourteen": "14",
    "fifteen": "15",
    "sixteen": "16",
    "seventeen": "17",
    "eighteen": "18",
    "nineteen": "19",
}
_TENS = {
    "twenty": "2",
    "thirty": "3",
    "forty": "4",
    "fifty": "5",
    "sixty": "6",
    "seventy": "7",
    "eighty": "8",
    "ninety": "9",
}
_REPEAT = {"double": 2, "triple": 3}
_SCALE = {"hundred": 2, "thousand": 3}
_FILLERS = {"um", "umm", "uh", "uhh", "er", "erm", "ah", "hmm", "mm", "like", "dash", "hyphen", "and", "then"}
_NUMBER_TOKENS = set(DIGIT_WORDS) | set(_TEENS) | set(_TENS) | set(_REPEAT) | set(_SCALE)
# Words (or numerals with symbols) that make the numbers next to them a price, a time or a count.
_NOT_AN_ID = re.compile(
    r"^\s*(?:dollars?|bucks|cents?|pounds?|euros?|percent|minutes?|hours?|days?|weeks?|months?|years?|"
    r"o'?clock|am|pm|a\.m\.|p\.m\.|people|persons|times|items|pieces|kilos?|pounds|miles|tablets|mg)\b",
    re.IGNORECASE,
)
# A word or a numeral group; dates, times, money and thousands-separated amounts are one token
# that never joins a digit run.
_TOKEN = re.compile(
    r"[$£€]\s?\d[\d,]*(?:\.\d+)?|\d{1,4}[/.\-]\d{1,2}[/.\-]\d{2,4}|\d{1,2}:\d{2}|"
    r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?%|\d+(?:st|nd|rd|th)\b|\d+|[A-Za-z]+(?:'[A-Za-z]+)?"
)


@dataclass(frozen=True)
class _Tok:
    start: int
    end: int
    text: str  # lower case

    @property
    def numeral(self) -> bool:
        return self.text.isdigit()

    @property
    def number(self) -> bool:
        return self.numeral or self.text in _NUMBER_TOKENS


def _tokens(text: str) -> list[_Tok]:
    return [_Tok(m.start(), m.end(), m.group(0).lower()) for m in _TOKEN.finditer(text)]


def _digits_of(words: list[str]) -> str:
    """The digits number tokens stand for: "four fifteen" -> 415, "double five" -> 55, "eight
    hundred" -> 800, "nineteen eighty five" -> 1985."""
    out: list[str] = []
    repeat = 1
    i = 0
    while i < len(words):
        w = words[i]
        nxt = words[i + 1] if i + 1 < len(words) else ""
        if w in _REPEAT:
            repeat = _REPEAT[w]
            i += 1
            continue
        if w in _TENS:
            unit = DIGIT_WORDS.get(nxt)
            if unit is not None and nxt not in ("oh", "o", "zero"):
                out.append(_TENS[w] + unit)
                i += 2
                repeat = 1
                continue
            out.append(_TENS[w] + "0")
        elif w in _SCALE:
            out.append("0" * _SCALE[w] if out else "1" + "0" * _SCALE[w])
        elif w in _TEENS:
            out.append(_TEENS[w])
        elif w.isdigit() or w in DIGIT_WORDS:
            d = w if w.isdigit() else DIGIT_WORDS[w]
            out.append(d[0] * repeat + d[1:])
        repeat = 1
        i += 1
    return "".join(out)


def spoken_digits(run: str) -> str:
    """The digits a run of digit words and numerals stands for ("double five, oh triple two 42"
    -> "55022242")."""
    return _digits_of([t.text for t in _tokens(run) if t.number])


@dataclass(frozen=True)
class Run:
    start: int
    end: int
    digits: str
    spoken: bool  # holds a word, not only numerals


def digit_runs(text: str) -> list[Run]:
    """Maximal runs of number tokens, joined by spaces, punctuation and at most two fillers
    ("um", "and", "dash"); a run followed by a unit ("dollars", "pm", "minutes") is a price, a
    time or a count and is left out."""
    toks = _tokens(text)
    runs: list[Run] = []
    i = 0
    while i < len(toks):
        lead = toks[i].text in _REPEAT and i + 1 < len(toks) and toks[i + 1].text in DIGIT_WORDS
        if not toks[i].number or (toks[i].text in _REPEAT and not lead) or toks[i].text in _SCALE:
            i += 1
            continue
        members = [toks[i]]
        j = i + 1
        while j < len(toks):
            gap = text[members[-1].end : toks[j].start]
            if not re.fullmatch(r"[\s,.()+\-–—/]*", gap) or "\n" in gap:
                break
            if toks[j].number:
                members.append(toks[j])
                j += 1
                continue
            k = j
            while k < len(toks) and toks[k].text in _FILLERS and k - j < 2:
                k += 1
            if k == j or k >= len(toks) or not toks[k].number:
                break
            if not re.fullmatch(r"[\s,.()+\-–—/]*", text[toks[k - 1].end : toks[k].start]):
                break
            members.append(toks[k])
            j = k + 1
        end = members[-1].end
        if not _NOT_AN_ID.match(text[end:]):
            words = [t.text for t in members]
            start = members[0].start
            while start > 0 and text[start - 1] in "+(":  # "+1 415 …", "(415) …": the sign is masked too
                start -= 1
            runs.append(Run(start, end, _digits_of(words), any(not t.numeral for t in members)))
        i = max(j, i + 1)
    return runs


# --- patterns the recognisers use ------------------------------------------------------------
