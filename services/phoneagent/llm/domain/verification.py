"""Who may see or change a booking: the caller ID it was made from, plus a second factor the
caller says: the booking reference given at booking, or the date of birth where the agent file
collects it (``caller_verification: {date_of_birth: true}``).

A reference is 6 digits, drawn at booking and said in the confirmation. A reference and a date
of birth are stored only as salted PBKDF2 hashes. Each call keeps a :class:`CallerVerification`:
the bookings the caller has proved in this call (so a move after a find does not ask again) and
the failed attempts, which are limited (:data:`MAX_FAILURES` per call) and counted in
``pa_llm_caller_verification_failures_total``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from prometheus_client import Counter

from phoneagent.llm.domain.dates_parse import MONTHS
from phoneagent.llm.domain.dates_words import normalise
from phoneagent.runtime.redact import DIGIT_WORDS

REFERENCE_DIGITS = 6
MAX_FAILURES = 3  # wrong or unreadable answers per call; then only a person can help
MAX_VERIFIED = 20  # bookings remembered as proved per call (a caller has a handful at most)
_ITERATIONS = 20_000  # about 10 ms a check: slows guessing at a copied table, not a caller
_SCHEME = "pbkdf2_sha256"

VERIFICATION_FAILURES = Counter(
    "pa_llm_caller_verification_failures_total",
    "Refused attempts to reach a booking, by reason: no_caller_id (withheld or unreadable caller "
    "ID), malformed (not a 6-digit reference or a date of birth), no_match (no booking with that "
    "reference or date of birth for the caller ID), locked (the call used up its attempts).",
    ["reason"],
)

_REPEAT = {"double": 2, "triple": 3}  # "double four" is 44
_TOKEN = re.compile(r"[a-z]+|\d+")


def new_reference() -> str:
    """A fresh booking reference: 6 random digits, easy to say and to write down."""
    return f"{secrets.randbelow(10**REFERENCE_DIGITS):0{REFERENCE_DIGITS}d}"


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """The stored form of a reference or date of birth: ``pbkdf2_sha256$iterations$salt$hash``."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, _ITERATIONS)
    return f"{_SCHEME}${_ITERATIONS}${salt.hex()}${digest.hex()}"


def secret_matches(secret: str, stored: str) -> bool:
    """Whether ``secret`` is the one ``stored`` was made from (False for anything malformed)."""
    try:
        scheme, iterations, salt, digest = stored.split("$")
        if scheme != _SCHEME:
            return False
        given = hashlib.pbkdf2_hmac("sha256", secret.encode(), bytes.fromhex(salt), int(iterations))
        return hmac.compare_digest(given.hex(), digest)
    except ValueError:
        return False


def burn_one_check() -> None:
    """As much work as checking one secret: a caller with no booking waits as long as one with."""
    hashlib.pbkdf2_hmac("sha256", b"000000", b"\0" * 16, _ITERATIONS)


def read_reference(text: str) -> str | None:
    """The booking reference in words as said or written: ``"471209"``, ``"471 209"``, ``"four
    seven one, two oh nine"``, ``"double four..."``. A run of exactly 6 digits (digit words
    count; other words end a run), the last one said; None when there is none (a phone number
    is too long to be one)."""
    runs: list[str] = []
    current, repeat = "", 1
    for token in _TOKEN.findall(text.lower()):
        digit = token if token.isdigit() else DIGIT_WORDS.get(token)
        if token in _REPEAT:
            repeat = _REPEAT[token]
            continue
        if digit is None:
            if current:
                runs.append(current)
            current = ""
        else:
            current += digit[0] * repeat + digit[1:]
        repeat = 1
    if current:
        runs.append(current)
    found = [r for r in runs if len(r) == REFERENCE_DIGITS]
    return found[-1] if found else None


def spoken_digits(text: str) -> str:
    """Every digit in ``text``, digit words included, run together (``"4 7 one, uh, 209"`` ->
    ``"471209"``): to tell whether a reference the model passes was said at all."""
    tokens = _TOKEN.findall(text.lower())
    return "".join(token if token.isdigit() else DIGIT_WORDS.get(token, "") for token in tokens)


_MON = "|".join(MONTHS)
_YEAR = r"((?:19|20)\d\d|(?:19|20) \d\d)(?!\d)"  # "1980", or "19 80" from "nineteen eighty"
_HIGH_TENS = {"sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}  # years; times stop at fifty
_UNITS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_HIGH_TENS_WORDS = re.compile(rf"\b({'|'.join(_HIGH_TENS)})(?:[- ]({'|'.join(_UNITS)}))?\b")
_THOUSANDS = re.compile(r"\b2 thousand(?: and)?(?: (\d{1,2})(?!\d))?")  # "two thousand and five"
_BIRTH_FORMS = (
    re.compile(r"\b((?:19|20)\d\d)-(\d{1,2})-(\d{1,2})\b"),  # 1980-03-14: year, month, day
    re.compile(rf"\b({_MON}) (?:the )?(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?{_YEAR}"),  # march 14th 1980
    re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?({_MON}) {_YEAR}"),  # 14th of march 1980
)


def read_birth_date(text: str, today: date) -> date | None:
    """A date of birth as said or written, with its year: ``"March 14th, 1980"``, ``"the
    fourteenth of March nineteen eighty"``, ``"1980-03-14"``; the last one said. None when there
    is none, or it is not a real past date (an appointment day has no year, or a future one)."""
    words = _HIGH_TENS_WORDS.sub(_tens_digits, text.lower().replace(",", " "))
    words = _THOUSANDS.sub(lambda m: str(2000 + int(m.group(1) or 0)), normalise(words))
    found: list[tuple[int, date]] = []
    for number, form in enumerate(_BIRTH_FORMS):
        for m in form.finditer(words):
            if number == 0:
                year, month, day = m.group(1), m.group(2), m.group(3)
            elif number == 1:
                month, day, year = str(MONTHS.index(m.group(1)) + 1), m.group(2), m.group(3)
            else:
                day, month, year = m.group(1), str(MONTHS.index(m.group(2)) + 1), m.group(3)
            try:
                born = date(int(year.replace(" ", "")), int(month), int(day))
            except ValueError:
                continue
            if date(1900, 1, 1) <= born < today:
                found.append((m.start(), born))
    return max(found)[1] if found else None


def _tens_digits(m: re.Match[str]) -> str:
    return str(_HIGH_TENS[m.group(1)] + (_UNITS.index(m.group(2)) + 1 if m.group(2) else 0))


@dataclass
class CallerVerification:
    """One call's verification state: bookings proved and failed attempts. Kept with the tool
    state (:meth:`snapshot`), so it survives a replica taking the call over. The tools change it
    in a worker thread while the dialog may save it: a lock keeps the two apart."""

    verified: set[str] = field(default_factory=set)  # appointment ids proved in this call
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def locked(self) -> bool:
        return self.failures >= MAX_FAILURES

    @property
    def attempts_left(self) -> int:
        return max(0, MAX_FAILURES - self.failures)

    def prove(self, appointment_ids: list[str]) -> None:
        with self._lock:
            for appointment_id in appointment_ids:
                if len(self.verified) < MAX_VERIFIED:
                    self.verified.add(appointment_id)

    def fail(self, reason: str) -> None:
        """A refused attempt: counted by reason; unreadable and wrong answers use up a try."""
        VERIFICATION_FAILURES.labels(reason=reason).inc()
        if reason in ("malformed", "no_match"):
            with self._lock:
                self.failures += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"verified": sorted(self.verified), "failures": self.failures}

    def restore(self, saved: Any) -> None:
        """Take back a :meth:`snapshot`; anything malformed in it is dropped, never raised."""
        ids: list[str] = []
        failures = 0
        if isinstance(saved, dict):
            raw_ids, raw = saved.get("verified"), saved.get("failures")
            if isinstance(raw_ids, list):
                ids = [i for i in raw_ids if isinstance(i, str) and 0 < len(i) <= 40]
            if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
                failures = min(raw, MAX_FAILURES)
        with self._lock:
            self.verified, self.failures = set(ids[:MAX_VERIFIED]), failures
