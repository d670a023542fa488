"""Dialog logic against a scripted engine: sentences stream out, barge-in truncates the
history to what was heard, tools run in code with a filler, errors become an apology."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import DialogConfig, DialogState, Sentence, ToolOutcome
from phoneagent.llm.engines.base import Delta
from phoneagent.llm.replies import APOLOGY
from phoneagent.runtime.errors import EngineFailure
from support.common import wait_for
from support.llm import StandInEngine


class ScriptedEngine(StandInEngine):
    """Yields scripted pieces; a piece None means 'wait until released'."""

    name = "scripted"

    def __init__(self, scripts: list[list[str | None]], fail: bool = False) -> None:
        super().__init__()
        self.scripts = scripts
        self.fail = fail

    async def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        request_id: str,
        max_tokens: int,
        temperature: float,
        tools: Any = None,
        json_schema: Any = None,
    ) -> AsyncIterator[Delta]:
        self.requests.append([dict(m) for m in messages])
        if self.fail:
            raise EngineFailure("engine down")
        for piece in self.scripts.pop(0):
            if piece is None:
                await self.release.wait()
                if request_id in self.aborted:
                    yield Delta(finish_reason="abort")
                    return
                continue
            yield Delta(text=piece)
        yield Delta(finish_reason="stop", completion_tokens=5)


class Tools:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def schemas(self) -> list[dict[str, Any]]:
        return [{"type": "function", "function": {"name": "book_appointment"}}]

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, arguments))
        await asyncio.sleep(self.delay)
        return ToolOutcome(
            ok=True, result={"booked": "2026-11-24T10:00"}, spoken="Booked for Tuesday at ten."
        )


def make(
    engine: ScriptedEngine, tools: Tools | None = None, **cfg: Any
) -> tuple[Dialog, list[Sentence], list[DialogState]]:
    said: list[Sentence] = []
    saved: list[DialogState] = []

    async def publish(s: Sentence) -> None:
        said.append(s)

    async def save(st: DialogState) -> None:
        saved.append(DialogState.from_json(st.to_json()))

    d = Dialog(
        "c1",
        engine,
        system_prompt=lambda: "You are a receptionist.",
        greeting="Hello, this is Ada.",
        publish=publish,
        save=save,
        tools=tools,
        config=DialogConfig(**cfg),
    )
    return d, said, saved


async def test_reply_streams_sentences_with_ids_and_history_keeps_it() -> None:
    engine = ScriptedEngine([["Sure, ", "I can help with that. ", "What day ", "suits you?"]])
    d, said, saved = make(engine)
    await d.greet()
    assert said[0].text == "Hello, this is Ada." and said[0].generation == 1 and said[0].turn == 0
    await d.on_user_turn(1, "I need an appointment")
    await wait_for(lambda: said and said[-1].final and said[-1].generation == 2)
    texts = [s.text for s in said if s.generation == 2 and s.text]
    assert "".join(texts).replace(" ", "") == "Sure,Icanhelpwiththat.Whatdaysuitsyou?"
    assert [s.seq for s in said if s.generation == 2] == list(range(len(texts) + 1))
    assert not said[0].final and said[1].final and said[1].text == ""  # end-of-generation marker
    await d.on_playback_done(2)
    roles = [m["role"] for m in saved[-1].history]
    assert roles == ["assistant", "user", "assistant"]
    assert saved[-1].history[-1]["content"].startswith("Sure,")


async def test_barge_in_aborts_and_history_keeps_only_what_was_heard() -> None:
    engine = ScriptedEngine(
        [["Our opening hours are nine to five. ", "On Saturdays we open ", None, "at ten and close at two."]]
    )
    d, said, saved = make(engine)
    await d.on_user_turn(1, "When are you open?")
    await wait_for(lambda: len(said) >= 1)
    await d.on_barge_in(said[0].generation, heard_sentence_seq=0, heard_chars=18)
    assert engine.aborted, "engine request must be aborted"
    history = saved[-1].history
    assert history[-1] == {"role": "assistant", "content": "Our opening hours..."}
    assert all("Saturdays" not in m["content"] for m in history)
    # Barge-in for an old generation is ignored.
    await d.on_barge_in(99, 0, 0)
    assert saved[-1].history == history


async def test_tool_call_runs_in_code_with_a_filler_then_speaks_the_result() -> None:
    engine = ScriptedEngine(
        [
            [
                '<tool_call>\n{"name": "book_appointment", ',
                '"arguments": {"when": "next Tuesday at 10"}}\n</tool_call>',
            ],
            ["You're booked for Tuesday at ten. ", "Anything else?"],
        ]
    )
    tools = Tools(delay=0.3)
    d, said, saved = make(engine, tools, filler_after_s=0.1)
    await d.on_user_turn(1, "Book me next Tuesday at 10")
    await wait_for(lambda: said and said[-1].final, timeout=3)
    assert tools.calls == [("book_appointment", {"when": "next Tuesday at 10"})]
    texts = [s.text for s in said if s.text]
    assert texts[0] == "One moment while I check." and "<tool_call>" not in "".join(texts)
    assert any("booked" in t for t in texts)
    assert engine.requests[1][-1]["role"] == "tool"


async def test_engine_failure_becomes_an_apology_and_the_call_goes_on() -> None:
    engine = ScriptedEngine([], fail=True)
    d, said, _ = make(engine)
    await d.on_user_turn(1, "hello?")
    await wait_for(lambda: said)
    assert said[-2].text == APOLOGY and said[-1].final
    engine.fail = False
    engine.scripts = [["Yes, I'm here."]]
    await d.on_user_turn(2, "hello again")
    await wait_for(lambda: said[-1].final and said[-2].text == "Yes, I'm here.")


CALL_JSON = '{"name": "book_appointment", "arguments": {"when": "Tuesday at 10"}}'


@pytest.mark.parametrize("first", [[CALL_JSON], ["```json\n", CALL_JSON, "\n```"]], ids=["bare", "fenced"])
async def test_bare_json_and_fenced_tool_calls_are_run_not_spoken(first: list[str | None]) -> None:
    engine = ScriptedEngine([first, ["Booked."]])
    tools = Tools()
    d, said, _ = make(engine, tools)
    await d.on_user_turn(1, "Book me Tuesday at 10")
    await wait_for(lambda: said and said[-1].final, timeout=3)
    assert tools.calls == [("book_appointment", {"when": "Tuesday at 10"})]
    assert all("{" not in s.text and "```" not in s.text for s in said)


async def test_text_that_only_looks_like_json_at_first_is_still_spoken() -> None:
    engine = ScriptedEngine([["{Sorry}", " we are closed today."]])
    d, said, _ = make(engine, Tools())
    await d.on_user_turn(1, "Are you open?")
    await wait_for(lambda: said and said[-1].final, timeout=3)
    assert "closed" in " ".join(s.text for s in said)


async def test_policy_words_cut_a_reply_then_the_question_is_answered_in_the_same_generation() -> None:
    """The recording notice arrives while the answer to the caller is being generated: the
    notice is spoken first, then the answer is generated again after it, in one generation
    (a newer generation would cut the notice short at the edge)."""
    engine = ScriptedEngine([["We accept ", None, "most plans."], ["We accept Delta Dental."]])
    d, said, saved = make(engine)
    await d.greet()
    await d.on_user_turn(1, "Do you take Delta Dental?")
    await wait_for(lambda: len(engine.requests) == 1)
    generation = await d.say_directive("This call may be recorded.", answer_pending=True)
    assert engine.aborted, "the cut-off request must be aborted"
    await wait_for(lambda: said[-1].final and said[-1].generation == generation)
    mine = [s for s in said if s.generation == generation]
    assert [s.text for s in mine] == ["This call may be recorded.", "We accept Delta Dental.", ""]
    assert [s.seq for s in mine] == [0, 1, 2] and all(s.turn == 1 for s in mine)
    assert len(engine.requests) == 2 and engine.requests[1][-1]["role"] == "user"  # nothing unheard kept
    await d.on_playback_done(generation)
    assert saved[-1].history[-1] == {
        "role": "assistant",
        "content": "This call may be recorded. We accept Delta Dental.",
    }


async def test_policy_words_that_end_the_call_do_not_answer_again() -> None:
    engine = ScriptedEngine([["We accept ", None, "most plans."]])
    d, said, _ = make(engine)
    await d.on_user_turn(1, "Do you take Delta Dental?")
    await wait_for(lambda: len(engine.requests) == 1)
    generation = await d.say_directive("You will not be called again. Goodbye.")
    mine = [s.text for s in said if s.generation == generation]
    assert mine == ["You will not be called again. Goodbye.", ""]
    await asyncio.sleep(0.05)
    assert len(engine.requests) == 1


async def test_a_final_that_policy_words_already_answered_goes_before_them_in_the_history() -> None:
    """Policy's message offer played out before the final it answers arrived: the caller's
    words are put before it, nothing is generated, and the next turn numbers on from it."""
    engine = ScriptedEngine([["Thanks, Ana."]])
    d, said, saved = make(engine)
    await d.greet()
    await d.on_playback_done(1)
    generation = await d.say_directive("Nobody is free. I can take a message.")
    await d.on_playback_done(generation)
    await d.on_answered_turn(1, " I want a person. ")
    assert [(m["role"], m["content"]) for m in saved[-1].history] == [
        ("assistant", "Hello, this is Ada."),
        ("user", "I want a person."),
        ("assistant", "Nobody is free. I can take a message."),
    ]
    assert not engine.requests and d.reply is None
    await d.on_user_turn(2, "It is Ana.")
    await wait_for(lambda: said[-1].final and said[-1].turn == 2)
    assert engine.requests[0][-1] == {"role": "user", "content": "It is Ana."}


async def test_history_is_trimmed_to_its_character_budget_starting_with_a_caller_turn() -> None:
    engine = ScriptedEngine([["Sure thing, noted. "] for _ in range(12)])
    d, said, saved = make(engine, max_history_chars=600)
    for turn in range(1, 13):
        await d.on_user_turn(turn, f"This is caller turn number {turn}, " + "with some padding words " * 3)
        await wait_for(lambda t=turn: said and said[-1].final and said[-1].turn == t)
        await d.on_playback_done(said[-1].generation)
    history = saved[-1].history
    assert sum(len(m["content"]) for m in history) <= 600
    assert history[0]["role"] == "user" and "turn number" in history[0]["content"]
    assert "turn number 12" in history[-2]["content"] and history[-1]["role"] == "assistant"
    assert "turn number 1," not in " ".join(m["content"] for m in history)


async def test_history_past_its_message_budget_loses_a_third_at_once_not_a_message_a_turn() -> None:
    """A trim changes the start of the conversation, and the engine evaluates all of it again:
    with one message dropped per turn, every turn after the 12th re-read ~550 tokens (8 s)."""
    engine = ScriptedEngine([["Noted. "] for _ in range(20)])
    d, said, saved = make(engine, max_history=12)
    starts = []
    for turn in range(1, 21):
        await d.on_user_turn(turn, f"Caller turn {turn}.")
        await wait_for(lambda t=turn: said and said[-1].final and said[-1].turn == t)
        await d.on_playback_done(said[-1].generation)
        history = saved[-1].history
        assert len(history) <= 12 and history[0]["role"] == "user"
        starts.append(history[0]["content"])
    # Each trim leaves 8 messages (four turns), so the start moves every 3rd turn at most.
    changes = sum(a != b for a, b in zip(starts, starts[1:], strict=False))
    assert 3 <= changes <= 6, starts
    assert saved[-1].history[-2]["content"] == "Caller turn 20."


async def test_a_result_spoken_as_it_is_keeps_only_short_fields_in_the_history() -> None:
    class KnowledgeTools(Tools):
        async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
            passages = [{"text": "A long passage. " * 20, "score": 0.8}]
            return ToolOutcome(
                ok=True, result={"status": "ok", "passages": passages}, spoken="We accept Delta.", final=True
            )

    engine = ScriptedEngine([['<tool_call>{"name": "lookup_knowledge", "arguments": {}}</tool_call>']])
    d, said, saved = make(engine, KnowledgeTools())
    await d.on_user_turn(1, "Do you take Delta Dental?")
    await wait_for(lambda: said and said[-1].final)
    tool_message = next(m for m in d.state.history if m["role"] == "tool")
    assert json.loads(tool_message["content"]) == {"ok": True, "status": "ok", "say": "We accept Delta."}


async def test_facts_ride_with_the_callers_words_only_when_the_conversation_lacks_them() -> None:
    """A fact line already sent in this call is not sent again (the prompt the engine holds stays
    a prefix of the next one); a new or changed line is."""
    engine = ScriptedEngine([["Yes."], ["Okay."], ["Sure."]])
    said: list[Sentence] = []
    facts = {"now": "Today is Monday. The time now is about 9:30 am."}

    async def publish(s: Sentence) -> None:
        said.append(s)

    async def save(_: DialogState) -> None:
        return None

    def context(text: str) -> str:
        lines = [facts["now"]]
        if "insurance" in text:
            lines.append("From the practice's documents: We accept Delta Dental.")
        return "\n".join(lines)

    d = Dialog(
        "c1", engine, system_prompt=lambda: "S", greeting="", publish=publish, save=save, context=context
    )
    for turn, text in enumerate(["Do you take insurance?", "And on insurance again?", "What time is it?"], 1):
        if turn == 3:
            facts["now"] = "Today is Monday. The time now is about 9:35 am."
        await d.on_user_turn(turn, text)
        await wait_for(lambda turn=turn: any(s.final and s.turn == turn for s in said))
        await d.on_playback_done(d.state.generation)
    users = [m["content"] for m in d.state.history if m["role"] == "user"]
    assert (
        "9:30" in users[0]
        and "Delta Dental" in users[0]
        and users[0].endswith("Caller: Do you take insurance?")
    )
    assert users[1] == "And on insurance again?"  # both lines are in the history already
    assert "9:35" in users[2] and "Delta" not in users[2]


class PrefillingEngine(ScriptedEngine):
    """An engine that keeps what it evaluated between requests (as llama.cpp does)."""

    keeps_prefix = True


def _live_dialog(engine: Any) -> tuple[Dialog, list[Sentence]]:
    """A dialog on ``engine`` (a LiveFirst) and the sentences it publishes."""
    said: list[Sentence] = []

    async def publish(s: Sentence) -> None:
        said.append(s)

    async def save(_: DialogState) -> None:
        return None

    return Dialog("c1", engine, system_prompt=lambda: "S", greeting="", publish=publish, save=save), said


async def test_after_a_reply_the_next_turn_opening_is_prefilled_in_the_background() -> None:
    from phoneagent.llm.priority import LiveFirst

    engine = PrefillingEngine([["Sure, ", "what day? "], ["x"], ["Okay."], ["x"]])
    d, said = _live_dialog(LiveFirst(engine, quiet_s=0.0))
    await d.on_user_turn(1, "I need an appointment")
    await wait_for(lambda: d.prefilling is not None)
    assert d.prefilling is not None and await asyncio.wait_for(d.prefilling, 5)
    prefill = engine.requests[1]
    # The reply as heard in full, then an empty caller turn: the next prompt starts the same way.
    assert prefill[-2] == {"role": "assistant", "content": "Sure, what day?"}
    assert prefill[-1] == {"role": "user", "content": ""}
    await d.on_playback_done(d.state.generation)
    await d.on_user_turn(2, "Tuesday")
    await wait_for(lambda: any(s.final and s.turn == 2 for s in said))
    assert engine.requests[2][: len(prefill) - 1] == prefill[:-1]
    await d.close()


async def test_after_policy_words_the_next_turn_opening_is_prefilled_too() -> None:
    """Policy's words (the recording notice) join the conversation the model never evaluated:
    the caller's next turn would read them; a prefill evaluates them while the caller listens."""
    from phoneagent.llm.priority import LiveFirst

    engine = PrefillingEngine([["Sure, ", "what day? "], ["x"], ["x"]])
    d, said = _live_dialog(LiveFirst(engine, quiet_s=0.0))
    await d.on_user_turn(1, "I need an appointment")
    await wait_for(lambda: d.prefilling is not None and d.prefilling.done())
    await d.on_playback_done(d.state.generation)
    first = d.prefilling
    generation = await d.say_directive("This call is recorded.")
    await wait_for(lambda: d.prefilling is not first and d.prefilling is not None)
    assert d.prefilling is not None and await asyncio.wait_for(d.prefilling, 5)
    prefill = engine.requests[-1]
    assert prefill[-2] == {"role": "assistant", "content": "This call is recorded."}
    assert prefill[-1] == {"role": "user", "content": ""}
    assert any(s.final and s.generation == generation for s in said)
    await d.close()


async def test_the_callers_words_so_far_are_prefilled_and_the_final_shares_them() -> None:
    from phoneagent.llm.priority import LiveFirst

    engine = PrefillingEngine([["Sure, ", "what day? "], ["x"], ["x"], ["Bring your card."], ["x"]])
    d, said = _live_dialog(LiveFirst(engine, quiet_s=0.0))
    await d.on_user_turn(1, "I need an appointment")
    assert not d.prefill_caller(2, "What should")  # the reply is still being generated
    await wait_for(lambda: d.prefilling is not None)
    assert d.prefilling is not None and await asyncio.wait_for(d.prefilling, 5)
    await d.on_playback_done(d.state.generation)
    assert not d.prefill_caller(1, "I need")  # a turn already answered
    assert not d.prefill_caller(2, "  ")
    assert d.prefill_caller(2, "What should I")
    assert d._caller_prefill is not None and await asyncio.wait_for(d._caller_prefill, 5)
    assert d.caller_prefills == 1
    partial = engine.requests[2]
    assert partial[-1] == {"role": "user", "content": "What should I"}
    await d.on_user_turn(2, "What should I bring?")
    await wait_for(lambda: any(s.final and s.turn == 2 for s in said))
    final = engine.requests[3]
    # the same conversation up to the caller's words, which begin as the partial did
    assert final[:-1] == partial[:-1] and final[-1]["content"].startswith("What should I")
    await d.close()


async def test_a_caller_prefill_waiting_for_the_engine_is_dropped_by_the_final() -> None:
    from phoneagent.llm.priority import LiveFirst

    engine = PrefillingEngine([["Hello there. "], ["Tuesday works."], ["x"]])
    # never quiet here: the prefill waits
    d, said = _live_dialog(LiveFirst(engine, quiet_s=30.0, prefill_quiet_s=30.0))
    assert d.prefill_caller(1, "Is Tuesday")
    waiting = d._caller_prefill
    await d.on_user_turn(1, "Is Tuesday free?")
    assert waiting is not None
    await wait_for(waiting.done)
    assert waiting.cancelled()
    await wait_for(lambda: any(s.final and s.turn == 1 for s in said))
    assert len(engine.requests) == 1  # only the final's own request reached the engine
    assert d.caller_prefills == 0
    await d.close()


class Documents(Tools):
    """A knowledge tool whose passage the model is to phrase."""

    async def run(self, name: str, arguments: dict[str, Any]) -> ToolOutcome:
        self.calls.append((name, arguments))
        return ToolOutcome(
            ok=True,
            result={"status": "ok", "passages": ["A cleaning costs 120 dollars."]},
            spoken="A cleaning costs 120 dollars.",
            for_model="From the practice's documents: A cleaning costs 120 dollars.",
        )


@pytest.mark.parametrize(
    ("follow_up", "said", "answered"),
    [
        (["It's 120 dollars."], "It's 120 dollars.", "MODEL"),
        # The model calls a tool again where an answer was due: the passage is said instead.
        (
            ['<tool_call>\n{"name": "lookup_knowledge", "arguments": {}}\n</tool_call>'],
            "A cleaning costs 120 dollars.",
            "FALLBACK",
        ),
    ],
)
async def test_the_model_phrases_a_documents_answer_from_the_passage_as_text(
    follow_up: list[str | None], said: str, answered: str
) -> None:
    call = '<tool_call>\n{"name": "lookup_knowledge", "arguments": {"question": "price"}}\n</tool_call>'
    engine = ScriptedEngine([[call], follow_up])
    d, out, _ = make(engine, Documents())
    await d.on_user_turn(1, "How much is a cleaning?")
    await wait_for(lambda: any(s.final and s.turn == 1 for s in out))
    assert " ".join(s.text for s in out if s.turn == 1 and s.text) == said
    assert [s for s in out if s.final][-1].answered_by.name == answered
    follow = engine.requests[1]
    assert follow[-1] == {
        "role": "tool",
        "content": "From the practice's documents: A cleaning costs 120 dollars.",
    }
