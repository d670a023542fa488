"""Claims to be a person: screened in configuration (greeting, persona, disclosure addition)
and in every sentence the agent is about to say.

The AI disclosure cannot be configured away, and no later sentence may take it back. A claim is
read over normalised words (:func:`phoneagent.agents.phrases.normalize_words`: lower case,
contractions expanded, fillers dropped), so "Kidding! I'm Sarah, a human receptionist." and
"this isn't an automated call" are both found. Offers to reach a person ("would you like to
speak with a real person?", "I am getting a person for you") are not claims and pass.
"""

from __future__ import annotations

import re

from phoneagent.agents.phrases import normalize_words

# Who the sentence says is speaking: the agent itself.
_SELF = r"(?:i am|this is|it is|you are (?:talking|speaking|chatting) (?:to|with)|you have reached|we are)"
# One optional word between (a name, "the"), but never a verb that makes it an offer or a negation.
_NOT_A_NAME = (
    "not|no|going|getting|transferring|connecting|finding|putting|passing|calling|asking|sending|"
    "happy|glad|able|here|sorry|checking|looking|trying|afraid"
)
_NAME = rf"(?:(?!(?:{_NOT_A_NAME})\b)[a-z]+ )?"
_REAL = r"(?:(?:real|live|actual|genuine|true|flesh and blood) )?"
_PERSON = rf"(?:an? )?{_REAL}(?:human|person|human being|people)\b"
_MACHINE = (
    r"(?:ai|a i|artificial(?: intelligence)?|automated|automatic|bot|robot|chatbot|machine|computer|"
    r"virtual(?: assistant| agent)?|assistant program)"
)
_CLAIMS = {
    "self_is_human": re.compile(rf"\b{_SELF} {_NAME}{_PERSON}"),
    "not_automated": re.compile(rf"\b(?:not|never|no longer) (?:an? |some )?{_MACHINE}\b"),
    "no_robot": re.compile(
        r"\b(?:i am|this is|you are (?:talking|speaking) (?:to|with)) no (?:ai|bot|robot|machine)\b"
    ),
}
# Instructions to the model (the persona is written to "you"): play a person, or hide being an AI.
_AI = rf"(?:an? )?(?:{_MACHINE}|assistant)"
_TELL = r"(?:admit|reveal|say|tell|mention|disclose|confirm|let (?:them|anyone|the caller|callers) know)"
_WHOM = r"(?: (?:to )?(?:them|anyone|callers|the caller|people|customers|patients))?"
_INSTRUCTIONS = {
    "persona_is_human": re.compile(rf"\byou are {_NAME}{_PERSON}"),
    "play_human": re.compile(
        rf"\b(?:pretend|act|claim|say|insist|pose|pass yourself off|present yourself)"
        rf"(?: to be| that you are| you are| as| like)? {_NAME}{_PERSON}"
    ),
    "hide_ai": re.compile(
        rf"\b(?:never|do not|not|avoid|refuse to) (?:ever )?{_TELL}{_WHOM}(?: that)? "
        rf"(?:you are|you are being|it is) {_AI}\b"
    ),
}
HUMAN_CLAIM_REPLACEMENT = "To be clear, I am an AI assistant, not a person."


def human_claim(text: str) -> str | None:
    """The name of the claim to be human in ``text`` (e.g. ``self_is_human``), or None."""
    words = " ".join(normalize_words(text or ""))
    for name, rx in _CLAIMS.items():
        if rx.search(words):
            return name
    return None


def persona_claim(text: str) -> str | None:
    """Like :func:`human_claim`, and also instructions to play a person or hide being an AI."""
    found = human_claim(text)
    if found is not None:
        return found
    words = " ".join(normalize_words(text or ""))
    for name, rx in _INSTRUCTIONS.items():
        if rx.search(words):
            return name
    return None
