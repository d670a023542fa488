"""Preemptive replies with the real Qwen2.5-Coder-0.5B model and the real tools, in process:
the reply started on a preflight and released by the confirming final is the reply the final
alone gets (temperature 0: the same prompt gives the same words), nothing is published before
the final, and a transfer the model asks for on a preflight runs only once the final confirms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from phoneagent.devtools.llm_eval import Rig, say
from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import Sentence
from support.common import wait_for
from support.llm import needs

pytestmark = [
    pytest.mark.slow,
    needs("llama_cpp", what="llama-cpp-python"),  # fails instead in CI
]


@pytest.fixture(scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    r = await Rig.open(tmp_path_factory.mktemp("llm-real-preflight"), max_tokens=48)
    await r.warm_up()
    yield r
    await r.close()


async def parked(dialog: Dialog) -> None:
    """Wait (as long as the model needs) until the held reply waits for its confirmation: all of
    it generated, or a tool call ready to run."""
    await wait_for(lambda: dialog.speculative is not None and dialog.speculative.reply.parked, timeout=120)


async def preemptive(dialog: Dialog, turn: int, text: str, published: list[Sentence]) -> list[str]:
    await dialog.on_preflight(turn, text)
    await parked(dialog)
    assert not published, "a held reply was published before the final"
    await dialog.on_user_turn(turn, text)
    reply = dialog.reply
    assert reply is not None and reply.task is not None
    await asyncio.wait_for(asyncio.shield(reply.task), 120)
    await dialog.on_playback_done(reply.generation)
    return list(reply.sentences)


async def test_the_released_reply_is_the_reply_the_final_alone_gets(rig: Rig) -> None:
    question = "Do you take insurance?"
    plain, _ = rig.dialog("plain")
    try:
        expected = await say(plain, question, [])
    finally:
        await plain.close()
    published: list[Sentence] = []

    async def publish(s: Sentence) -> None:
        published.append(s)

    early, _ = rig.dialog("preflight", publish=publish)
    try:
        got = await preemptive(early, 1, question, published)
        assert got == expected
        assert [s.text for s in published if s.text] == expected
        assert early.state.history == plain.state.history
    finally:
        await early.close()


async def test_a_transfer_asked_for_on_a_preflight_waits_for_the_final(rig: Rig) -> None:
    actions: list[tuple[str, dict[str, Any]]] = []
    published: list[Sentence] = []

    async def action(name: str, result: dict[str, Any]) -> None:
        actions.append((name, result))

    async def publish(s: Sentence) -> None:
        published.append(s)

    dialog, tools = rig.dialog("preflight-transfer", action=action, publish=publish)
    try:
        await dialog.on_preflight(1, "Can I talk to a real person, please?")
        await parked(dialog)
        spec = dialog.speculative
        assert spec is not None and not spec.reply.held  # parked before a tool, not at its end
        assert tools.calls == [] and actions == [] and not published
        await dialog.drop_speculation("the caller went on")  # never confirmed: nothing ran
        assert tools.calls == [] and actions == []
        sentences = await preemptive(dialog, 1, "Can I talk to a real person, please?", published)
        assert [c[0].split(">")[-1] for c in tools.calls] == ["transfer_to_human"]
        assert [a[0] for a in actions] == ["transfer_to_human"]
        assert " ".join(sentences) == "I'll put you through now."
    finally:
        await dialog.close()
