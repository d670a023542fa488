"""End-of-turn decision: how long to wait, after the caller falls silent, before the turn is over.

Three things are combined when a pause starts (``probe_ms`` of silence by Silero VAD):

* the audio: :class:`~phoneagent.asr.turn_model.SmartTurn`'s probability that the speech so far
  sounds finished (intonation, rhythm);
* the words: the transcript of the turn so far (the decode started at the pause, else the latest
  partial). A phrase that cannot end a turn - a last word such as "and", "um", "the", "is", a
  trailing comma, or a phone or card number with too few digits - means the caller is not done
  whatever the audio says; a question or a sentence that ends plainly is finished;
* the silence itself: the wait chosen here is silence counted from the end of speech, so a
  caller who stays silent is answered at the latest after ``max_wait_ms``.

:func:`decide` maps them to a wait between ``min_wait_ms`` (a clearly finished turn) and
``max_wait_ms`` (an unfinished one); ``likely_over`` marks a decision the ASR may publish a
preflight transcript on. It is pure and cheap; the model score is computed in a worker thread.
On telephone audio (8 kHz G.711 upsampled to 16 kHz) the model still separates finished from
unfinished speech; the tests and ``python -m phoneagent.devtools.eot_bench`` check it there.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from phoneagent.runtime.errors import InvalidArgument


class TextState(enum.Enum):
    FINISHED = "finished"  # ends like a whole question or sentence
    UNFINISHED = "unfinished"  # cannot end a turn: "my number is", "and", "um"
    UNKNOWN = "unknown"  # no text, or no sign either way ("front left")


# Last words after which an English turn does not end (conjunctions, articles, prepositions,
# fillers, copulas and auxiliaries, possessives).
CONTINUATIONS = frozenset(
    """
    and or but so because cause since although though unless until while whereas if than then
    um uh er erm em hmm mm ah eh like
    the a an this that these those my your his her our their its some any every each no
    to of for with at in on from by about into onto over under between after before as via per
    is are was were be been being am will would can could should shall may might must do does did
    have has had i i'm we you he she they it's there's what's let's me want need wanna gonna plus
    """.split()
)
# A number being read out: the words that announce it and the digits it needs to be complete.
_NUMBER_DIGITS = (
    (re.compile(r"\b(card|credit)\b"), 15),
    (re.compile(r"\b(phone|number|cell|mobile|call me|reach me)\b"), 7),
)
MIN_SENTENCE_WORDS = 3
_WORD = re.compile(r"[a-z0-9']+")
_TRAILING_DIGITS = re.compile(r"(?:\d[\d\s\-.,]*)$")


def text_state(text: str) -> TextState:
    """Whether ``text`` (a transcript so far) reads as a finished turn."""
    t = text.strip().lower()
    if not t:
        return TextState.UNKNOWN
    if t.endswith((",", "-", "\u2014", "\u2026", "...", ":", ";")):
        return TextState.UNFINISHED
    words = _WORD.findall(t)
    if not words:
        return TextState.UNKNOWN
    if words[-1] in CONTINUATIONS:
        return TextState.UNFINISHED
    if words[-1][0].isdigit() and _number_incomplete(t):
        return TextState.UNFINISHED
    if t.endswith(("?", "!")):
        return TextState.FINISHED
    # Whisper ends nearly every decode with a period, even a phrase cut after its first word:
    # a period counts only after a whole clause's worth of words.
    if t.endswith(".") and len(words) >= MIN_SENTENCE_WORDS:
        return TextState.FINISHED
    return TextState.UNKNOWN


def _number_incomplete(t: str) -> bool:
    match = _TRAILING_DIGITS.search(t)
    if match is None:
        return False
    digits = sum(ch.isdigit() for ch in match.group(0))
    before = t[: match.start()]
    return any(pattern.search(before) and digits < need for pattern, need in _NUMBER_DIGITS)


@dataclass(frozen=True)
class TurnConfig:
    min_wait_ms: int = 200  # silence after a clearly finished turn
    max_wait_ms: int = 1200  # silence after an unfinished one (and the longest wait)
    threshold: float = 0.5  # model score at or above which the audio sounds finished
    probe_ms: int = 96  # silence after which the decision is taken

    def validate(self) -> None:
        if not 0 < self.min_wait_ms <= self.max_wait_ms:
            raise InvalidArgument("turn waits must satisfy 0 < min_wait_ms <= max_wait_ms")
        if not 0.0 < self.threshold < 1.0:
            raise InvalidArgument("turn threshold must be between 0 and 1")
        if not 0 < self.probe_ms <= self.min_wait_ms:
            raise InvalidArgument("turn probe_ms must be positive and at most min_wait_ms")


@dataclass(frozen=True)
class Decision:
    score: float  # the audio model's probability that the turn is finished (-1: no score)
    text: TextState
    wait_s: float  # silence after the end of speech before the turn is over
    likely_over: bool  # worth a preflight transcript


def decide(score: float | None, text: TextState, config: TurnConfig) -> Decision:
    """The wait for a pause whose audio scored ``score`` (None: no model) and whose words read ``text``."""
    lo, hi = config.min_wait_ms / 1000.0, config.max_wait_ms / 1000.0
    if text is TextState.UNFINISHED:
        return Decision(-1.0 if score is None else score, text, hi, False)
    if score is None:  # words alone: a finished sentence is answered soon, anything else waits
        wait = lo if text is TextState.FINISHED else (lo + hi) / 2
        return Decision(-1.0, text, wait, text is TextState.FINISHED)
    if score >= config.threshold:
        return Decision(score, text, lo, True)
    # The audio sounds unfinished: wait longer the lower the score; words that read finished halve it.
    doubt = (config.threshold - score) / config.threshold
    if text is TextState.FINISHED:
        doubt /= 2
    return Decision(score, text, lo + (hi - lo) * doubt, False)
