"""Redaction of transcripts before they are stored.

Builds on :func:`phoneagent.runtime.redact.redact_text`, which masks digits written as
numerals (cards, SSNs, phone numbers, e-mail, long account numbers). Speech recognisers
often write what callers read out as words, so this module adds, before handing over:

* spoken digit runs ("four one one one, one one one one ...", "double five", mixed with
  numerals): a Luhn-valid 13-19 digit run becomes ``[CARD]``, nine or more digits
  ``[NUMBER]``, seven or eight ``[PHONE:..]`` (as the runtime does for numerals);
* card security codes and PINs after their keyword ("the CVV is one two three") -> ``[CODE]``;
* dates of birth, only after a date-of-birth keyword ("date of birth", "DOB", "born on",
  "birthday"), so ordinary dates in a transcript stay readable -> ``[DOB]``.
"""

from __future__ import annotations

import re

from phoneagent.runtime.redact import luhn_ok, redact_text

_DIGIT_WORDS = {
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
_REPEAT = {"double": 2, "triple": 3}

_DIGIT_TOKEN = (
    r"(?:(?:double|triple)[\s-]+)?"
    r"(?:niner|zero|three|seven|eight|four|five|nine|one|two|six|oh|o|\d+)"
)
_DIGIT_RUN = re.compile(rf"(?<![\w']){_DIGIT_TOKEN}(?:[\s,.\-]+{_DIGIT_TOKEN})*(?![\w'])", re.IGNORECASE)
_WORD_DIGIT = re.compile(r"[a-z]+", re.IGNORECASE)

_CODE = re.compile(
    rf"(?P<key>\b(?:cvv2?|cvc2?|cid|security code|verification code|card code|pin(?: number| code)?)\b"
    rf"(?:\s+(?:is|was|it's|it is|number|:))*[\s:,]*)"
    rf"(?P<code>{_DIGIT_TOKEN}(?:[\s,\-]+{_DIGIT_TOKEN}){{0,5}})(?![\w'])",
    re.IGNORECASE,
)

_MONTHS = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december|"
    r"jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec)\.?"
)
_NUMBER_WORDS = (
    r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|"
    r"fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|"
    r"seventy|eighty|ninety|hundred|thousand)"
)
_ORDINAL_WORDS = (
    r"(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|"
    r"thirteenth|fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|"
    r"thirtieth)"
)
_DATE_CORE = (
    rf"(?:\d{{1,4}}[/.\-]\d{{1,2}}[/.\-]\d{{2,4}}|\d{{1,4}}(?:st|nd|rd|th)?|{_MONTHS}|"
    rf"{_NUMBER_WORDS}|{_ORDINAL_WORDS})"
)
_DOB = re.compile(
    rf"(?P<key>\b(?:date of birth|birth ?date|birthday|d\.?o\.?b\.?|born(?: on| in)?)"
    rf"(?:\s*:|\s+(?:is|was|it's|it is|on|in|the)\b)*\s*)"
    rf"(?P<date>{_DATE_CORE}(?:(?:[\s,/\-]+(?:(?:of|the|and)\s+)?){_DATE_CORE}(?![\w'])){{0,7}})(?![\w'])",
    re.IGNORECASE,
)


def spoken_digits(run: str) -> str:
    """The digits a run of digit words and numerals stands for ("double five one" -> "551")."""
    out: list[str] = []
    repeat = 1
    for token in re.findall(r"[a-z]+|\d+", run.lower()):
        if token in _REPEAT:
            repeat = _REPEAT[token]
            continue
        digits = _DIGIT_WORDS.get(token, token)
        out.append(digits[0] * repeat + digits[1:] if repeat > 1 else digits)
        repeat = 1
    return "".join(out)


def _mask_run(m: re.Match[str]) -> str:
    text = m.group(0)
    if not _WORD_DIGIT.search(text):
        return text  # numerals only: the runtime redactor handles them
    digits = spoken_digits(text)
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return "[CARD]"
    if len(digits) >= 9:
        return "[NUMBER]"
    if len(digits) >= 7:
        return "[PHONE:" + digits[-2:] + "]"
    return text


def _mask_code(m: re.Match[str]) -> str:
    digits = spoken_digits(m.group("code"))
    if 3 <= len(digits) <= 8:
        return m.group("key") + "[CODE]"
    return m.group(0)


def redact_transcript(text: str) -> str:
    """A transcript safe to store: DOB, codes and spoken digit runs masked, then the runtime patterns."""
    if not text:
        return text
    out = _DOB.sub(lambda m: m.group("key") + "[DOB]", text)
    out = _CODE.sub(_mask_code, out)
    out = _DIGIT_RUN.sub(_mask_run, out)
    return redact_text(out)
