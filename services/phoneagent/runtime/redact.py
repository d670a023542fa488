"""Redaction of personal data in free text: log lines, stored transcripts, phone numbers.

Patterns are deliberately broad: a false positive costs a few masked digits in a
log line, a false negative leaks a caller's card number.

* :func:`redact_text` masks digits written as numerals (cards, SSNs, phone numbers, e-mail,
  SIP users, long account numbers): for logs and any free text.
* :func:`redact_transcript` adds what speech recognisers write as words, for transcripts
  before they are stored or copied:

  - spoken digit runs ("four one one one, one one one one ...", "double five", mixed with
    numerals): a Luhn-valid 13-19 digit run becomes ``[CARD]``, nine or more digits
    ``[NUMBER]``, seven or eight ``[PHONE:..]`` (as for numerals);
  - card security codes, PINs and booking references after their keyword ("the CVV is one two
    three", "your booking reference is 471209") -> ``[CODE]``;
  - dates of birth, only after a date-of-birth keyword ("date of birth", "DOB", "born on",
    "birthday"), so ordinary dates in a transcript stay readable -> ``[DOB]``.
* :func:`mask_number` reduces a phone number to its last two digits.
"""

from __future__ import annotations

import re

_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_SSN = re.compile(r"(?<!\d)\d{3}[- ]\d{2}[- ]\d{4}(?!\d)")
_PHONE = re.compile(
    r"(?<![\w])(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])?\d{3,4}[\s.-]?\d{3,4}(?!\d)"
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+\.[\w.-]+")  # starts a run: linear, not quadratic
_LONG_DIGITS = re.compile(r"(?<!\d)\d{9,}(?!\d)")
_SIP_USER = re.compile(r"(sips?:)([^@;>\s]{1,256})@", re.IGNORECASE)  # bounded: linear time


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card(m: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", m.group(0))
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return "[CARD]"
    return m.group(0)


def _phone(m: re.Match[str]) -> str:
    text = m.group(0)
    digits = re.sub(r"\D", "", text)
    if len(digits) < 7:
        return text
    return "[PHONE:" + digits[-2:] + "]"


def redact_text(text: str) -> str:
    """Mask card numbers (Luhn-valid), US SSNs, e-mail addresses, SIP users, phone numbers and
    any other run of nine or more digits (account numbers)."""
    if not text:
        return text
    out = _CARD.sub(_card, text)
    out = _SSN.sub("[SSN]", out)
    out = _SIP_USER.sub(lambda m: m.group(1) + "[USER]@", out)
    out = _EMAIL.sub("[EMAIL]", out)
    out = _PHONE.sub(_phone, out)
    out = _LONG_DIGITS.sub("[NUMBER]", out)
    return out


def mask_number(number: str) -> str:
    """A phone number reduced to its last two digits, for logs (``+1…67``)."""
    digits = re.sub(r"\D", "", number or "")
    if not digits:
        return ""
    return "…" + digits[-2:]


# --- transcripts: what a recogniser writes as words -------------------------------------------

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
_REPEAT = {"double": 2, "triple": 3}

_DIGIT_TOKEN = (
    r"(?:(?:double|triple)[\s-]+)?"
    r"(?:niner|zero|three|seven|eight|four|five|nine|one|two|six|oh|o|\d+)"
)
_DIGIT_RUN = re.compile(rf"(?<![\w']){_DIGIT_TOKEN}(?:[\s,.\-]+{_DIGIT_TOKEN})*(?![\w'])", re.IGNORECASE)
_WORD_DIGIT = re.compile(r"[a-z]+", re.IGNORECASE)

_CODE = re.compile(
    rf"(?P<key>\b(?:cvv2?|cvc2?|cid|security code|verification code|card code|pin(?: number| code)?|"
    rf"(?:booking )?reference(?: number| code)?)\b"
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
        digits = DIGIT_WORDS.get(token, token)
        out.append(digits[0] * repeat + digits[1:] if repeat > 1 else digits)
        repeat = 1
    return "".join(out)


def _mask_run(m: re.Match[str]) -> str:
    text = m.group(0)
    if not _WORD_DIGIT.search(text):
        return text  # numerals only: redact_text handles them
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
    """A transcript safe to store: DOB, codes and spoken digit runs masked, then :func:`redact_text`."""
    if not text:
        return text
    out = _DOB.sub(lambda m: m.group("key") + "[DOB]", text)
    out = _CODE.sub(_mask_code, out)
    out = _DIGIT_RUN.sub(_mask_run, out)
    return redact_text(out)
