"""The AI disclosure every call starts with: a fixed core, then an optional addition.

The core cannot be configured away: the agent file has no disclosure key (see
:mod:`phoneagent.agents.agent`), an addition may not blank or contradict it, and the first
agent utterance of a call is rewritten to start with it (:func:`enforce_disclosure`). Policy
applies it on every call; TTS pre-renders the greeting as policy lets it out; the edge says it
before an answering-machine message.
"""

from __future__ import annotations

import re

from phoneagent.agents.human_claims import human_claim
from phoneagent.agents.phrases import normalize_words
from phoneagent.runtime.errors import InvalidArgument

DISCLOSURE_CORE = "You are speaking with an AI assistant."
MAX_DISCLOSURE_ADDITION = 300
# An addition may not contradict the core ("I'm a real person", "this is not an AI").
_DENIES_AI = re.compile(
    r"\b(?:not|never|no longer)\s+(?:an?\s+)?(?:ai|a i|artificial|automated|bot|robot|machine|computer|"
    r"virtual|assistant)\b|\b(?:i am|this is|you are talking to|you are speaking (?:with|to))\s+(?:an?\s+)?"
    r"(?:real|live|actual)?\s*(?:human|person|people)\b|\breal (?:human|person)\b|\bhuman being\b"
)


def build_disclosure(addition: str | None = None) -> str:
    """The disclosure to say first: the fixed core, then the agent's optional addition.

    The core cannot be configured away: a blank addition (an attempt to blank the
    disclosure), an over-long one, or one that denies being an AI raises InvalidArgument.
    """
    if addition is None:
        return DISCLOSURE_CORE
    if not isinstance(addition, str) or not addition.strip():
        raise InvalidArgument("the AI disclosure cannot be blanked; omit the setting to use the fixed text")
    text = " ".join(addition.split())
    if starts_with(text, DISCLOSURE_CORE):
        text = text[len(DISCLOSURE_CORE) :].strip()
        if not text:
            return DISCLOSURE_CORE
    if len(text) > MAX_DISCLOSURE_ADDITION:
        raise InvalidArgument(f"the disclosure addition must be at most {MAX_DISCLOSURE_ADDITION} characters")
    if _DENIES_AI.search(" ".join(normalize_words(text))) or human_claim(text) is not None:
        raise InvalidArgument("the disclosure addition contradicts the AI disclosure")
    return f"{DISCLOSURE_CORE} {text}"


def starts_with(text: str, prefix: str) -> bool:
    """Whether ``text`` starts with ``prefix``, ignoring case and runs of whitespace."""
    return " ".join(text.split()).lower().startswith(" ".join(prefix.split()).lower())


def enforce_disclosure(first_utterance_text: str, disclosure_text: str) -> str:
    """The first agent utterance, guaranteed to start with the disclosure (and so with its core)."""
    disclosure = " ".join((disclosure_text or "").split())
    if not starts_with(disclosure, DISCLOSURE_CORE):
        disclosure = f"{DISCLOSURE_CORE} {disclosure}".strip()
    utterance = " ".join((first_utterance_text or "").split())
    if starts_with(utterance, disclosure):
        return utterance
    if starts_with(utterance, DISCLOSURE_CORE):  # e.g. a voicemail message: add the rest, once
        utterance = utterance[len(DISCLOSURE_CORE) :].strip()
    return f"{disclosure} {utterance}".strip()
