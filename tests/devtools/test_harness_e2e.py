"""The simulated caller against the real local stack (all five services, real CPU models):
SIP to the edge on a free port, G.711 RTP both ways, the shipped scenarios' expectations (one
stack for the whole module: a question, a booking, a transfer, a barge-in and an opt-out)."""

from __future__ import annotations

import asyncio
import os
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from phoneagent.devtools.harness.demo import demo_env, free_udp_port
from phoneagent.devtools.harness.scenario import load_scenario
from phoneagent.devtools.harness.session import Outcome, run_scenario
from phoneagent.runtime.stack import Stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, dict[str, str]]]:
    data = tmp_path_factory.mktemp("harness-stack")
    env = demo_env(data, free_udp_port())
    env |= {"PA_RECORDS_DB": str(data / "records.sqlite3"), "PA_RECORDING_DIR": str(data / "recordings")}
    st = Stack(data, env=env)
    saved = {k: os.environ.get(k) for k in ("PA_DATABASE_URL", "PA_POLICY_DB")}
    try:
        st.start(ready_timeout=240)
        os.environ.update({k: env[k] for k in saved})
        yield st, env
    finally:
        st.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.timeout(600)
async def test_hours_scenario_through_the_edge(stack: tuple[Stack, dict[str, str]], tmp_path: Path) -> None:
    st, env = stack
    assert st.nats is not None
    wav = tmp_path / "hours.wav"
    outcome = await asyncio.wait_for(
        run_scenario(
            load_scenario("hours"),
            target=f"sip:agent@127.0.0.1:{env['PA_SIP_PORT']}",
            nats_url=st.nats.url,
            wav=wav,
        ),
        timeout=420,
    )
    print("\n" + outcome.text)
    assert outcome.result.agent_turns, "no agent audio arrived"
    assert all(c.passed for c in outcome.checks), outcome.text
    question = outcome.result.utterances[0]
    assert question.reply_latency_ms is not None and question.reply_latency_ms < 30000
    with wave.open(str(wav)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000 and w.getnframes() > 8000 * 3
    assert wav.with_suffix(".txt").read_text().count("\tcaller\t") == 1


async def _play(name: str, stack: tuple[Stack, dict[str, str]], tmp_path: Path) -> Outcome:
    st, env = stack
    assert st.nats is not None
    outcome = await asyncio.wait_for(
        run_scenario(
            load_scenario(name),
            target=f"sip:agent@127.0.0.1:{env['PA_SIP_PORT']}",
            nats_url=st.nats.url,
            wav=tmp_path / f"{name}.wav",
        ),
        timeout=420,
    )
    print("\n" + outcome.text)
    assert outcome.result.agent_turns, "no agent audio arrived"
    assert all(c.passed for c in outcome.checks), outcome.text
    return outcome


@pytest.mark.timeout(600)
async def test_booking_lands_in_the_appointments_database(
    stack: tuple[Stack, dict[str, str]], tmp_path: Path
) -> None:
    outcome = await _play("book", stack, tmp_path)
    kinds = {c.expectation.kind for c in outcome.checks}
    assert "appointment_booked" in kinds


@pytest.mark.timeout(600)
async def test_asking_for_a_person_is_transferred_or_offered_a_message(
    stack: tuple[Stack, dict[str, str]], tmp_path: Path
) -> None:
    """A transfer while the agent's transfer line is staffed, a message offer outside its hours
    (the ``escalated`` check decides which applies when the call ends)."""
    outcome = await _play("human", stack, tmp_path)
    assert {c.expectation.kind for c in outcome.checks} >= {"escalated"}


@pytest.mark.timeout(600)
async def test_barge_in_stops_the_greeting_and_gets_an_answer(
    stack: tuple[Stack, dict[str, str]], tmp_path: Path
) -> None:
    outcome = await _play("barge_in", stack, tmp_path)
    barge = outcome.result.utterances[0]
    assert barge.barge_in
    assert barge.barge_stop_ms is not None and barge.barge_stop_ms < 3000, outcome.text


@pytest.mark.timeout(600)
async def test_opt_out_is_recorded_and_the_agent_hangs_up(
    stack: tuple[Stack, dict[str, str]], tmp_path: Path
) -> None:
    outcome = await _play("optout", stack, tmp_path)
    assert {c.expectation.kind for c in outcome.checks} >= {"opted_out", "ended_by_agent"}
