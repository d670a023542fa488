"""Sentences the agent says word for word, besides the AI disclosure (:mod:`.disclosure`).

Policy decides when each is said (recording rules, escalation); TTS renders them ahead of
time so they play without synthesis. Both read them from here, so a change of wording is
made once.
"""

from __future__ import annotations

# Recording (phoneagent.policy.recording): the notice in one-party-consent places, else the question.
NOTICE_TEXT = "This call may be recorded for quality and training purposes."
CONSENT_PROMPT = "May I record this call for quality and training purposes? Please say yes or no."

# Escalation to a person (phoneagent.policy.live): handed over, or nobody free to take the call.
TRANSFER_TEXT = "Of course. I am transferring you to a member of our team now. Please hold."
TAKE_MESSAGE_TEXT = (
    "I am sorry, nobody is available to take your call right now. I can take a message: "
    "please tell me your name and what it is about."
)

# Speech recognition failed on what the caller just said (phoneagent.llm.asr_errors).
NOT_HEARD_TEXT = "Sorry, I did not catch that. Could you say it again?"
