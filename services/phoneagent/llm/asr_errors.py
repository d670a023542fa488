"""What the agent does when speech recognition fails on a call: it says so, and it is counted.

ASR publishes an error on the call's asr subject (``AsrEvent.error``) when a caller's utterance
could not be transcribed or its audio could not be taken. Without a reaction the caller hears
silence and waits for an answer that never comes. The llm owns what the agent says, so it asks
the caller to say it again (:data:`~phoneagent.agents.words.NOT_HEARD_TEXT`, spoken like policy's
words: through policy, as a new generation) -- unless the agent is speaking or about to, and at
most once per ``every_s`` so a failing recogniser does not make the agent repeat itself. Every
error is counted in ``pa_asr_errors_total{kind, action}``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from phoneagent.agents.words import NOT_HEARD_TEXT
from phoneagent.runtime import metrics
from phoneagent.runtime.errors import ErrorKind
from phoneagent.v1 import common_pb2

log = logging.getLogger(__name__)
ASK_AGAIN_EVERY_S = 10.0


class AsrErrorReaction:
    """Per call: turns ASR errors into "could you say it again?" (rate-limited) and a count."""

    def __init__(
        self,
        call_id: str,
        say: Callable[[str], Awaitable[object]],
        busy: Callable[[], bool],
        *,
        every_s: float = ASK_AGAIN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.call_id = call_id
        self.say = say  # speaks a fixed text as a new generation
        self.busy = busy  # True while the agent speaks or a reply is being made
        self.every_s = every_s
        self.clock = clock
        self._last_asked: float | None = None

    async def on_error(self, error: common_pb2.Error) -> str:
        """React to one error; returns what was done (also the metric's ``action`` label)."""
        kind = ErrorKind.from_wire(error.kind).name
        now = self.clock()
        if self.busy():
            action = "agent_busy"  # the caller is being answered anyway
        elif self._last_asked is not None and now - self._last_asked < self.every_s:
            action = "repeated"
        else:
            self._last_asked = now
            await self.say(NOT_HEARD_TEXT)
            action = "asked_again"
        metrics.ASR_ERRORS.labels(kind=kind, action=action).inc()
        log.warning("asr error on call", extra={"call_id": self.call_id, "error": kind, "action": action})
        return action
