"""Rules applied on every call: AI disclosure (whether the caller heard it; its words are in
:mod:`phoneagent.agents.disclosure`), escalation to a human, opt-out, and the answer to a caller
who asks whether they are talking to a person.

Recording consent lives in :mod:`phoneagent.policy.recording` and is re-exported here so
the service can import every per-call rule from one place.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from phoneagent.agents.disclosure import DISCLOSURE_CORE, enforce_disclosure, starts_with
from phoneagent.agents.phrases import PhraseMatcher, literal, normalize_words
from phoneagent.policy.recording import (  # noqa: F401 - re-exported
    DEFAULT_ALL_PARTY_STATES,
    RecordingConfig,
    RecordingMode,
    RecordingPlan,
    RecordingSession,
    RecordingState,
    plan_recording,
)
from phoneagent.policy.stores import DncStore
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError

log = logging.getLogger(__name__)

# --- (a) AI disclosure (the words themselves: phoneagent.agents.disclosure) --------------


class DisclosureGuard:
    """Per call: which agent sentence must carry the AI disclosure, and whether the caller heard it.

    The disclosure counts as given only once the caller heard it: the sentence that carried it
    was published (:meth:`published`, called after its audit record was written) and then played
    out (:meth:`on_playback_done` for its generation, or :meth:`on_barge_in` with a played
    position past the disclosure). A barge-in before that, a cancelled generation or a newer
    generation that supersedes it (AMD dropping the greeting for a voicemail message) means the
    next sentence is prefixed again.
    """

    def __init__(self, disclosure_text: str) -> None:
        self._text = disclosure_text
        self.disclosed = False  # heard by the caller
        self._pending: tuple[int, int, int] | None = None  # generation, sentence_seq, disclosure chars

    @property
    def pending_generation(self) -> int | None:
        """The generation whose disclosure went out but is not yet known to be heard."""
        return None if self.disclosed or self._pending is None else self._pending[0]

    def needs_disclosure(self, generation: int) -> bool:
        """Whether a sentence of ``generation`` must be prefixed with the disclosure."""
        if self.disclosed:
            return False
        return self._pending is None or self._pending[0] != generation

    def apply(self, agent_text: str) -> str:
        """``agent_text`` starting with the disclosure (not yet counted as given)."""
        return enforce_disclosure(agent_text, self._text)

    def published(self, generation: int, sentence_seq: int, spoken_text: str) -> None:
        """The prefixed sentence went out for speech; it counts once played."""
        disclosure = " ".join(self._text.split())
        chars = len(disclosure) if starts_with(spoken_text, disclosure) else len(DISCLOSURE_CORE)
        self._pending = (generation, sentence_seq, chars)

    def on_playback_done(self, generation: int) -> None:
        if self._pending is not None and self._pending[0] == generation:
            self.disclosed = True

    def on_barge_in(self, generation: int, heard_sentence_seq: int, heard_text_chars: int) -> None:
        if self.disclosed or self._pending is None or self._pending[0] != generation:
            return
        _, seq, chars = self._pending
        if heard_sentence_seq > seq or (heard_sentence_seq == seq and heard_text_chars >= chars):
            self.disclosed = True
        else:
            self._pending = None  # cut before the caller heard it: say it again

    def on_cancel(self, generation: int) -> None:
        """Everything up to ``generation`` was dropped unplayed (a cancel, not a barge-in)."""
        if not self.disclosed and self._pending is not None and self._pending[0] <= generation:
            self._pending = None

    def snapshot(self) -> dict[str, object]:
        """What a replica taking the call over needs to go on (see :meth:`restore`)."""
        return {"disclosed": self.disclosed, "pending": list(self._pending) if self._pending else None}

    def restore(self, saved: dict[str, object]) -> None:
        self.disclosed = bool(saved.get("disclosed", False))
        pending = saved.get("pending")
        if isinstance(pending, list) and len(pending) == 3 and all(isinstance(v, int) for v in pending):
            self._pending = (pending[0], pending[1], pending[2])
        else:
            self._pending = None


# --- (c) escalation to a human -------------------------------------------------------------


class EscalationAction(enum.StrEnum):
    TRANSFER = "transfer"
    TAKE_MESSAGE = "take_message"


@dataclass(frozen=True)
class EscalationDecision:
    action: EscalationAction
    reason: str  # human_requested | repeated_misunderstanding | trigger_word
    matched: str


_HUMAN = r"(?:real |live |actual |human )?(?:person|human(?: being)?|agent|operator|representative|rep)"
_BOSS = r"(?:manager|supervisor)(?!'s)"  # "get me a manager", not "I want the manager's email"
_ANYONE = rf"(?:{_HUMAN}|someone|somebody|anyone|anybody|{_BOSS})"
_DET = r"(?:(?:a|an|the|some|your|one of your) )?"
_ASK = r"(?:want|need|would like|get me|give me|can i have|can i get)"
_GAP = r"(?:[a-z0-9]+ ){0,2}?"
HUMAN_REQUEST_PHRASES = {
    "speak_to": rf"(?:talk|speak|chat) (?:to|with) {_DET}{_GAP}{_ANYONE}",
    "connect_me": rf"(?:transfer|connect|put) me (?:through )?(?:(?:to|with|on with) )?{_DET}{_GAP}{_ANYONE}",
    "want_human": rf"{_ASK} {_DET}{_GAP}(?:{_HUMAN}|{_BOSS})",
    "short_request": rf"^(?:i want )?{_DET}{_HUMAN}(?: now)?$",
    "representative": r"representative",
    "real_person": r"(?<!are you a )(?<!are you )(?<!is this a )(?<!am i talking to a )"
    r"(?:real|live|actual) (?:person|human)|human being",
}


@dataclass(frozen=True)
class EscalationConfig:
    max_misunderstood: int = 3
    trigger_words: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_misunderstood < 1:
            raise InvalidArgument("max_misunderstood must be at least 1")
        if any(not isinstance(w, str) or not normalize_words(w) for w in self.trigger_words):
            raise InvalidArgument("escalation trigger words must be non-blank text")


class EscalationDetector:
    """Per call: decides when to hand the caller to a person (or take a message when nobody is free)."""

    def __init__(self, config: EscalationConfig | None = None) -> None:
        self.config = config or EscalationConfig()
        self._human = PhraseMatcher(HUMAN_REQUEST_PHRASES)
        self._triggers = PhraseMatcher({w: literal(w) for w in self.config.trigger_words})
        self._misunderstood = 0

    @property
    def misunderstood_turns(self) -> int:
        """Consecutive caller turns the agent could not make sense of."""
        return self._misunderstood

    def on_turn(
        self, caller_text: str, understood: bool = True, humans_available: bool = True
    ) -> EscalationDecision | None:
        """Check one caller turn; ``understood`` is False when the agent could not make sense of it."""
        self._misunderstood = 0 if understood else self._misunderstood + 1
        reason, matched = self._reason(caller_text)
        if reason is None:
            return None
        action = EscalationAction.TRANSFER if humans_available else EscalationAction.TAKE_MESSAGE
        self._misunderstood = 0
        log.info("escalation decided", extra={"action": action.value, "reason": reason})
        return EscalationDecision(action=action, reason=reason, matched=matched)

    def _reason(self, text: str) -> tuple[str | None, str]:
        hit = self._human.find(text)
        if hit is not None:
            return "human_requested", hit.name
        hit = self._triggers.find(text)
        if hit is not None:
            return "trigger_word", hit.name
        if self._misunderstood >= self.config.max_misunderstood:
            return "repeated_misunderstanding", f"{self._misunderstood} turns"
        return None, ""


# --- (d) opt-out ---------------------------------------------------------------------------

_ME = r"(?:me|us|my (?:phone )?number|this number|my name|my details|my info(?:rmation)?)"
OPT_OUT_PHRASES = {
    "stop_calling": r"(?:stop|quit|cease) (?:calling|phoning|ringing|contacting|texting)",
    "take_me_off": rf"(?:take|get|cross) {_ME} off",
    "remove_me": rf"(?:remove|delete|erase) {_ME}",
    "do_not_call": r"do not call",
    "never_call": r"(?<!did )(?<!did you )(?<!does )(?<!do you )"
    r"(?:never|not) (?:ever )?(?:call|contact|phone|ring) (?:me|us|this number|here)(?! back)",
    "unsubscribe": r"unsubscribe(?: me)?|opt (?:me )?out",
    "no_more_calls": r"no more calls",
    "lose_my_number": r"lose my number",
}
OPT_OUT_CONFIRMATION = (
    "Understood. I have removed your number from our calling list, and we will not call you again. Goodbye."
)
OPT_OUT_UNRECORDED = "Understood. I will pass on your request not to be called again. Goodbye."

_OPT_OUT = PhraseMatcher(OPT_OUT_PHRASES)


@dataclass(frozen=True)
class OptOutResult:
    phrase: str
    recorded: bool
    confirmation: str


def detect_opt_out(text: str) -> str | None:
    """The name of the opt-out phrase in ``text``, or None."""
    hit = _OPT_OUT.find(text)
    return hit.name if hit else None


def handle_opt_out(
    text: str, number: str | None, dnc: DncStore, now: datetime, source: str = "opt-out during call"
) -> OptOutResult | None:
    """On an opt-out phrase, add ``number`` to the internal DNC and return the confirmation to say.

    When the number is unknown (anonymous caller) or the store fails, ``recorded`` is False and
    the confirmation does not claim the number was removed.
    """
    phrase = detect_opt_out(text)
    if phrase is None:
        return None
    try:
        if not number:
            raise InvalidArgument("caller number unknown")
        dnc.add(number, source, now)
    except PhoneAgentError as exc:
        log.error("opt-out not recorded", extra={"phrase": phrase, "error_kind": exc.kind.name})
        return OptOutResult(phrase=phrase, recorded=False, confirmation=OPT_OUT_UNRECORDED)
    except Exception:  # noqa: BLE001 - a store failure must not end the call
        log.exception("opt-out not recorded", extra={"phrase": phrase})
        return OptOutResult(phrase=phrase, recorded=False, confirmation=OPT_OUT_UNRECORDED)
    return OptOutResult(phrase=phrase, recorded=True, confirmation=OPT_OUT_CONFIRMATION)


# --- (e) a caller who asks whether they are talking to a person ------------------------------

_WHAT = (
    r"(?:an? )?(?:real |actual |live |automated |artificial )?"
    r"(?:robot|bot|chatbot|machine|computer|ai|a i|artificial intelligence|human(?: being)?|person|"
    r"recording|computer voice|voice assistant|virtual assistant)"
)
IDENTITY_QUESTION_PHRASES = {
    "talking_to": rf"(?:am i|are we) (?:talking|speaking|chatting) (?:to|with) {_WHAT}",
    "are_you": rf"(?:are you|is this|is that|was that|is it) {_WHAT}",
    "are_you_real": r"are you (?:real|human|alive|a real one)",
}
# The exact answer, the same whether the caller asked "are you a robot?" or "are you human?".
IDENTITY_ANSWER = "I am an AI assistant, not a person."
# Words that may stand around the question without asking anything more.
_IDENTITY_ONLY = frozenset(
    "wait so hey hi hello sorry just quick question curious actually or a an the real actual live "
    "person human being robot bot machine computer ai i am are we you is it this that was talking "
    "speaking chatting to with okay ok oh well honestly seriously excuse me please tell truth like "
    "right now hmm hang on recording".split()
)
_IDENTITY = PhraseMatcher(IDENTITY_QUESTION_PHRASES)


def detect_identity_question(text: str) -> str | None:
    """The name of the phrase in ``text`` that asks whether the agent is a person or a
    machine ("wait, am I talking to a robot?", "are you a real person?"), or None."""
    hit = _IDENTITY.find(text)
    return hit.name if hit else None


def only_identity_question(text: str) -> bool:
    """Whether ``text`` asks that and nothing more: the exact answer then answers the turn."""
    return detect_identity_question(text) is not None and all(
        w in _IDENTITY_ONLY for w in normalize_words(text)
    )
