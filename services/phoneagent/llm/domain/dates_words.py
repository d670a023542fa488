"""Normalising spoken English date/time text: lower case, digits for number words.

``"Ten thirty on the twenty-first, p.m."`` becomes ``"10 30 on the 21st pm"``.
"""

from __future__ import annotations

import re

_ONES = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50}
_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}
_ABBREVIATIONS = {
    "mon": "monday",
    "tue": "tuesday",
    "tues": "tuesday",
    "wed": "wednesday",
    "weds": "wednesday",
    "thu": "thursday",
    "thur": "thursday",
    "thurs": "thursday",
    "fri": "friday",
    "sat": "saturday",
    "jan": "january",
    "feb": "february",
    "apr": "april",
    "jun": "june",
    "jul": "july",
    "aug": "august",
    "sep": "september",
    "sept": "september",
    "oct": "october",
    "nov": "november",
    "dec": "december",
    "tmrw": "tomorrow",
    "tomorow": "tomorrow",
    "couple": "2",
    "mins": "minutes",
    "min": "minutes",
    "hrs": "hours",
    "hr": "hours",
    "wk": "week",
    "wks": "weeks",
}
_TOKEN = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}:\d{2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?|\d+(?:st|nd|rd|th)?|[a-z]+"
)


def _suffix(n: int) -> str:
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}" + {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


def _prepare(text: str) -> str:
    s = text.lower()
    s = re.sub(r"\b([ap])\.?\s?m\b\.?", r" \1m ", s)  # a.m. / p. m. / am
    s = re.sub(r"o['\u2019]?\s?clock", " oclock ", s)
    s = re.sub(r"(\d{4}-\d{1,2}-\d{1,2})t(\d)", r"\1 \2", s)  # ISO date-time
    s = re.sub(r"(\d{1,2}:\d{2}):\d{2}(?:\.\d+)?(?:z|[+-]\d{2}:?\d{2})?", r"\1", s)  # drop seconds / offset
    s = re.sub(r"\b(\d{1,2})\.(\d{2})\b", r"\1:\2", s)  # 2.30 pm
    s = re.sub(r"(\d)(am|pm)\b", r"\1 \2", s)
    return s


def _number_words(words: list[str]) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(words):
        w = _ABBREVIATIONS.get(words[i], words[i])
        nxt = _ABBREVIATIONS.get(words[i + 1], words[i + 1]) if i + 1 < len(words) else ""
        if w in _TENS:
            if nxt in _ONES and 1 <= _ONES[nxt] <= 9:
                out.append(str(_TENS[w] + _ONES[nxt]))
                i += 2
                continue
            if nxt in _ORDINALS and _ORDINALS[nxt] <= 9:
                out.append(_suffix(_TENS[w] + _ORDINALS[nxt]))
                i += 2
                continue
            out.append(str(_TENS[w]))
        elif w in ("oh", "o") and nxt in _ONES and 1 <= _ONES[nxt] <= 9 and out and out[-1].isdigit():
            out.append(f"0{_ONES[nxt]}")
            i += 2
            continue
        elif w in _ONES:
            out.append(str(_ONES[w]))
        elif w in _ORDINALS:
            out.append(_suffix(_ORDINALS[w]))
        elif w == "hundred" and out and out[-1].isdigit() and int(out[-1]) <= 23:
            out[-1] = f"{int(out[-1])}:00"
        else:
            out.append(w)
        i += 1
    return out


def normalise(text: str) -> str:
    """Lower-cased tokens joined by single spaces, number words as digits, ordinals as ``21st``."""
    words = _TOKEN.findall(_prepare(text))
    return " ".join(_number_words(words))
