"""Preemptive replies: the dialog starts answering a preflight transcript (a final the ASR
expects but has not confirmed) and holds the reply until the final for the same turn confirms
the same words.

Where the hold happens: in the llm, before anything is published. A held reply's sentences wait
in the dialog (:attr:`~phoneagent.llm.replies.Reply.held`) and its tools wait for confirmation
(:meth:`~phoneagent.llm.replies.Replies._until_confirmed`); on confirmation the held sentences
go out at once, in order, and the generation carries on publishing as usual. Holding here rather
than at the edge or in TTS keeps the speculative words away from every other stage: policy never
judges (nor records) words the caller will not hear, TTS renders nothing that may be thrown away,
and the edge, which drops whole generations below a floor, never has to tell a held generation
from the one still playing (a CancelGeneration for it would cut the reply being played, since a
cancel drops every generation below the one named). What is given up is TTS rendering the first
sentence before confirmation, which is one sentence's synthesis at most; the model's prompt
evaluation and first tokens, the larger share, still run early. A discarded reply is stopped
through its engine request id, which carries its generation id; since nothing of it was
published, that generation id is given to the next reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from phoneagent.llm.replies import Reply
from phoneagent.runtime import metrics

_WORD = re.compile(r"[\w']+")


def same_words(a: str, b: str) -> bool:
    """Whether two transcripts carry the same words (case, punctuation and spacing aside)."""
    return normalised(a) == normalised(b)


def normalised(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def goes_beyond(partial: str, text: str) -> bool:
    """Whether a partial transcript of the preflight's turn has more words than the preflight:
    the caller went on. A partial with as many words or fewer says nothing new, whatever they
    are: one decoded before the preflight, on less audio, may still arrive after it."""
    return len(normalised(partial).split()) > len(normalised(text).split())


@dataclass
class Speculation:
    """A reply started on a preflight, with what its turn will add to the conversation."""

    reply: Reply
    turn: int  # the ASR's turn id, which the confirming final carries too
    text: str  # the caller's words the preflight carried
    content: str  # the user message the turn will append (the words and any new facts)
    messages: list[dict[str, Any]]  # the prompt it was started on
    tools_before: dict[str, Any] | None  # the tool runner's memory before the turn was noted
    resumed: dict[str, Any] | None  # a tool call code resumes for the turn (run only when confirmed)
    speech_end_unix_ns: int = 0  # when the preflight's speech ended (0: not known)


def count(outcome: str) -> None:
    metrics.LLM_PREFLIGHT_REPLIES.labels(outcome=outcome).inc()
