"""Redaction of personal data in free text (logs, stored transcripts).

Patterns are deliberately broad: a false positive costs a few masked digits in a
log line, a false negative leaks a caller's card number.
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
