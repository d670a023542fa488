"""The finders of personal data behind :mod:`phoneagent.runtime.redact`: written numbers and
e-mail (the log pass), and the phone-specific ones of stored transcripts: digit runs, spoken
e-mail, dates of birth and codes after their keyword, street addresses and zip codes, names
after a cue or spelled out, and answers to the agent's own question. Each of the latter becomes
a Presidio recogniser there."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from presidio_analyzer import EntityRecognizer, RecognizerResult

from phoneagent.runtime.spoken_numbers import Run, _tokens, digit_runs, spoken_digits

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
    "AI",
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
