"""Call recording: notice only, or ask consent and record only after a yes.

US states split into one-party consent (any participant may record) and all-party
consent (everyone must agree). When any party to the call may be in an all-party state,
or in a place whose rule we do not know (non-US, unknown area code), we ask for consent
and record only after a clear yes; a refusal, an unclear answer after the last prompt,
no answer, or a later "stop recording" all stop recording.

Default all-party list, from the state statutes (check with counsel before relying on it;
it is configurable):
  CA Penal Code 632;  CT Gen. Stat. 52-570d (civil, telephone);  DE Code tit. 11 s.1335
  (conflicts with s.2402, listed to be safe);  FL Stat. 934.03;  IL 720 ILCS 5/14-2
  (as amended 2014);  MD Cts. & Jud. Proc. 10-402;  MA Gen. Laws c.272 s.99;
  MI Comp. Laws 750.539c (courts differ on participants, listed to be safe);
  MT Code 45-8-213;  NV Rev. Stat. 200.620 (telephone, per Lane v. Allstate);
  NH RSA 570-A:2;  OR Rev. Stat. 165.540 (all-party for in-person talk, one-party for
  telephone; listed to be safe);  PA 18 Pa.C.S. 5703-5704;  WA RCW 9.73.030.
Listing a one-party state as all-party only costs a consent question; the reverse
records someone unlawfully, so the defaults err on the side of asking.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from phoneagent.agents.phrases import PhraseMatcher, normalize
from phoneagent.agents.words import CONSENT_PROMPT, NOTICE_TEXT
from phoneagent.runtime.areacodes import AreaCodeTable, default_table
from phoneagent.runtime.errors import InvalidArgument

log = logging.getLogger(__name__)

DEFAULT_ALL_PARTY_STATES = frozenset(
    {"CA", "CT", "DE", "FL", "IL", "MD", "MA", "MI", "MT", "NV", "NH", "OR", "PA", "WA"}
)
_US_STATES = frozenset(
    "AL AK AZ AR CA CO CT DE DC FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY "
    "NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY".split()
)


def parse_states(value: str) -> frozenset[str]:
    """A comma-separated list of US state codes (``CA, WA``), or ``none``; InvalidArgument if wrong."""
    text = value.strip()
    if text.lower() == "none":
        return frozenset()
    codes = [c.strip().upper() for c in text.split(",") if c.strip()]
    if not codes:
        raise InvalidArgument("list US state codes separated by commas (e.g. CA,WA), or none")
    unknown = sorted({c for c in codes if c not in _US_STATES})
    if unknown:
        raise InvalidArgument(f"unknown US state codes: {', '.join(u[:8] for u in unknown[:10])}")
    return frozenset(codes)


def check_states(value: str) -> str | None:
    """Settings check for :func:`parse_states`."""
    try:
        parse_states(value)
    except InvalidArgument as exc:
        return str(exc)
    return None


class RecordingMode(enum.StrEnum):
    NOTICE_ONLY = "notice_only"
    ASK_CONSENT = "ask_consent"


class RecordingState(enum.StrEnum):
    RECORDING = "recording"
    AWAITING_CONSENT = "awaiting_consent"
    NOT_RECORDING = "not_recording"


@dataclass(frozen=True)
class RecordingConfig:
    all_party_states: frozenset[str] = DEFAULT_ALL_PARTY_STATES
    notice_text: str = NOTICE_TEXT
    consent_prompt: str = CONSENT_PROMPT
    max_prompts: int = 2

    def __post_init__(self) -> None:
        unknown = {s for s in self.all_party_states if s not in _US_STATES}
        if unknown:
            raise InvalidArgument(f"unknown US state codes in all-party list: {sorted(unknown)}")
        if not self.notice_text.strip() or not self.consent_prompt.strip():
            raise InvalidArgument("recording notice and consent prompt cannot be blank")
        if self.max_prompts < 1:
            raise InvalidArgument("max_prompts must be at least 1")


@dataclass(frozen=True)
class RecordingPlan:
    mode: RecordingMode
    reason: str
    text: str  # the notice (NOTICE_ONLY) or the consent question (ASK_CONSENT) to say
    regions: tuple[str, ...] = field(default=())


def plan_recording(
    party_numbers: Iterable[str],
    extra_regions: Iterable[str] = (),
    config: RecordingConfig | None = None,
    table: AreaCodeTable | None = None,
) -> RecordingPlan:
    """Decide per call. ``party_numbers`` are the E.164 numbers of everyone on the call;
    ``extra_regions`` adds known locations (``US-CA``), e.g. the business's own site."""
    cfg = config or RecordingConfig()
    tbl = table or default_table()
    regions: list[str] = list(extra_regions)
    for number in party_numbers:
        entry = tbl.for_number(number)
        regions.append(entry.region if entry else "unknown")
    if not regions:
        regions.append("unknown")
    for region in regions:
        state = region[3:] if region.startswith("US-") else None
        if state is None:
            return RecordingPlan(
                RecordingMode.ASK_CONSENT,
                f"recording rule unknown for region {region}",
                cfg.consent_prompt,
                tuple(regions),
            )
        if state in cfg.all_party_states:
            return RecordingPlan(
                RecordingMode.ASK_CONSENT,
                f"all-party consent state {state}",
                cfg.consent_prompt,
                tuple(regions),
            )
    return RecordingPlan(
        RecordingMode.NOTICE_ONLY, "one-party consent states only", cfg.notice_text, tuple(regions)
    )


_YES_OVERRIDES = re.compile(r"\b(?:no problem|no worries|why not|(?:i )?do not mind|not a problem)\b")
_NO = re.compile(r"\b(?:no|nope|nah|not|never|refuse|decline|disagree|object|rather not)\b")
_YES = re.compile(
    r"\b(?:yes|yeah|yea|yep|yup|sure|ok|okay|fine|alright|all right|go ahead|of course|agree|"
    r"consent|certainly|absolutely|correct|please do|that is fine)\b"
)
_STOP_RECORDING = PhraseMatcher(
    {
        "stop_recording": r"(?:stop|end|turn off|pause) (?:the )?recording",
        "do_not_record": r"(?:do not|not|never) record",
    }
)


def classify_answer(text: str) -> bool | None:
    """True for a clear yes, False for a no (or any hedge containing a negation), None when unclear."""
    words = " ".join(normalize(text))
    if not words:
        return None
    if _YES_OVERRIDES.search(words):
        return True
    if _NO.search(words):
        return False
    if _YES.search(words):
        return True
    return None


class RecordingSession:
    """Per call: whether audio may be recorded right now."""

    def __init__(self, plan: RecordingPlan, config: RecordingConfig | None = None) -> None:
        self.plan = plan
        self._cfg = config or RecordingConfig()
        self._prompts = 1
        if plan.mode is RecordingMode.NOTICE_ONLY:
            self.state = RecordingState.RECORDING
        else:
            self.state = RecordingState.AWAITING_CONSENT

    @property
    def may_record(self) -> bool:
        return self.state is RecordingState.RECORDING

    @property
    def ask_again(self) -> bool:
        """True when the last answer was unclear and the question should be repeated."""
        return self.state is RecordingState.AWAITING_CONSENT and self._prompts > 1

    def on_answer(self, text: str) -> RecordingState:
        if self.state is not RecordingState.AWAITING_CONSENT:
            return self.on_utterance(text)
        answer = classify_answer(text)
        if answer is True:
            self._set(RecordingState.RECORDING, "consent given")
        elif answer is False:
            self._set(RecordingState.NOT_RECORDING, "consent refused")
        elif self._prompts >= self._cfg.max_prompts:
            self._set(RecordingState.NOT_RECORDING, "no clear answer")
        else:
            self._prompts += 1
        return self.state

    def on_no_answer(self) -> RecordingState:
        """The caller said nothing after the consent question."""
        if self.state is RecordingState.AWAITING_CONSENT:
            self._set(RecordingState.NOT_RECORDING, "no answer")
        return self.state

    def on_utterance(self, text: str) -> RecordingState:
        """Any later caller turn: "stop recording" or "don't record this" ends recording."""
        if self.state is not RecordingState.NOT_RECORDING and _STOP_RECORDING.find(text) is not None:
            self._set(RecordingState.NOT_RECORDING, "caller asked to stop recording")
        return self.state

    def _set(self, state: RecordingState, why: str) -> None:
        self.state = state
        log.info("recording state changed", extra={"recording_state": state.value, "why": why})
