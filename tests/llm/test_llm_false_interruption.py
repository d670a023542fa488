"""A false interruption the edge already acted on: long caller "speech" cut the agent's reply
(a BargeIn before any words), and ASR's final then has no words in it, or only a backchannel.
The LLM call session, on a real bus, says the rest of the reply from the sentence the caller
was cut off in instead of going silent; the history ends with the whole reply, once. A real turn
after the cut is answered as usual."""

from __future__ import annotations

import pytest
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import control_pb2
from support.common import wait_for
from support.llm import ScriptEngine, open_session


def cut(sentence: int, chars: int) -> control_pb2.BargeIn:
    """The edge's report: generation 1 was cut ``chars`` into its sentence ``sentence``."""
    return control_pb2.BargeIn(
        interrupted_generation_id=1, heard_sentence_seq=sentence, heard_text_chars=chars
    )


HOURS = ["Our opening hours are nine to five on weekdays. ", "On Saturdays we are closed. ", "Sundays too."]


@pytest.mark.parametrize(("text", "backchannel"), [("", False), ("...", False), ("Mm-hmm.", True)])
async def test_a_reply_cut_by_a_sound_without_words_is_resumed_where_it_was_cut(
    bus: Bus, text: str, backchannel: bool
) -> None:
    engine = ScriptEngine([HOURS])
    _, call, session = await open_session(bus, engine)
    try:
        await call.transcript(1, "When are you open?")
        await wait_for(lambda: call.finished(1), timeout=5)
        sentences = [r.text for r in call.replies if r.meta.generation_id == 1 and r.text]
        assert len(sentences) == 3
        await call.send(barge_in=cut(sentence=1, chars=6))
        assert session.dialog is not None
        dialog = session.dialog
        await wait_for(lambda: dialog.cut is not None, timeout=5)
        assert dialog.state.history[-1]["content"].endswith("On Sat...")

        await call.transcript(2, text, backchannel=backchannel)
        await wait_for(lambda: call.finished(2), timeout=5)
        resumed = [r for r in call.replies if r.meta.generation_id == 2]
        assert [(r.sentence_seq, r.text) for r in resumed if r.text] == [(1, sentences[1]), (2, sentences[2])]
        assert all(r.meta.turn_id == 1 for r in resumed)
        assert len(engine.requests) == 1  # said again as it was, no model request

        await call.send(playback_done=control_pb2.PlaybackDone(generation_id=2))
        await wait_for(lambda: dialog.reply is None, timeout=5)
        assert [m["role"] for m in dialog.state.history] == ["user", "assistant"]
        assert dialog.state.history[-1]["content"] == " ".join(sentences)
    finally:
        await session.close("test")


async def test_a_real_turn_after_the_cut_is_answered_and_nothing_is_resumed(bus: Bus) -> None:
    engine = ScriptEngine([HOURS, ["We are closed on public holidays."]])
    _, call, session = await open_session(bus, engine)
    try:
        await call.transcript(1, "When are you open?")
        await wait_for(lambda: call.finished(1), timeout=5)
        await call.send(barge_in=cut(sentence=0, chars=10))
        await wait_for(lambda: session.dialog is not None and session.dialog.cut is not None, timeout=5)
        await call.transcript(2, "What about holidays?")
        await wait_for(lambda: call.finished(2), timeout=5)
        assert call.spoken(2) == "We are closed on public holidays."
        assert session.dialog is not None and session.dialog.cut is None
        await call.transcript(3, "")  # a wordless final now resumes nothing
        await call.settle(99)
        assert not [r for r in call.replies if r.meta.generation_id == 3]
    finally:
        await session.close("test")
