"""Two real policy service processes share calls and one database; one is killed (SIGKILL)
between two sentences of a reply. The survivor takes its calls over and goes on where it left
off: no caller hears a silence of more than 2 s, every sentence the dialog sent is said (those
sent while nobody gated the call too, from PA_REPLAY), and the AI disclosure is said once per
call, neither again after the takeover nor skipped:

* a call whose caller heard the disclosure before the kill does not hear it again;
* a call whose disclosure finished playing while nobody gated it (the report is replayed) does
  not hear it again either;
* a call whose first sentence was sent while nobody gated it hears the disclosure with it.

A caller who asked to be put on the do-not-call list while nobody gated the call is answered
once by the survivor (the transcript is replayed), not never and not twice."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from phoneagent.agents.disclosure import DISCLOSURE_CORE
from phoneagent.policy.call_rules import OPT_OUT_CONFIRMATION
from phoneagent.runtime import bus_auth, streams, subjects
from phoneagent.runtime.bus import Bus, Delivery, Lane
from phoneagent.runtime.bus_auth import BusAuth
from phoneagent.runtime.natsserver import ENV_AUTH_DIR
from phoneagent.v1 import call_pb2, common_pb2, control_pb2, speech_pb2
from support.common import SIGNING_KEY_FILE, spawn_replica, wait_for, wait_replica_ready
from support.policy_stack import Call, start_call

SENTENCE_EVERY_S = 0.2
MAX_SILENCE_S = 2.0


async def calls_owned_by(bus: Bus, owner: str, count: int) -> list[Call]:
    """Start calls until ``owner`` has ``count`` of them; the others are ended again."""
    mine: list[Call] = []
    for i in range(40):
        call = await start_call(bus, f"+1415555{i:04d}")
        kv = await streams.sessions_kv(bus.jetstream(), "policy")
        record = await kv.get(call.call_id)
        if owner.encode() in (record.value or b"") and len(mine) < count:
            mine.append(call)
            continue
        ended = call_pb2.CallEvent(ended=call_pb2.CallEnded(meta=common_pb2.EventMeta(call_id=call.call_id)))
        await bus.publish(subjects.lifecycle(call.call_id), ended, lane=Lane.CONTROL)
        if len(mine) == count:
            return mine
    raise AssertionError(f"{owner} got fewer than {count} calls")


class Arrivals:
    """When each sentence of a call reached the speech subject (monotonic seconds)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    async def on_say(self, msg: speech_pb2.AgentText, _: Delivery) -> None:
        if msg.text:
            self.times.append(time.monotonic())

    def longest_silence(self, start: float, end: float) -> float:
        times = [start, *(t for t in self.times if start <= t <= end), end]
        return max(b - a for a, b in zip(times, times[1:], strict=False))


async def until_stored(bus: Bus, subject: str) -> None:
    """Wait until PA_REPLAY holds a message on ``subject``."""
    js = bus.jetstream()
    deadline = time.monotonic() + 5
    while True:
        try:
            await js.get_last_msg(subjects.REPLAY_STREAM, subject)
            return
        except Exception:
            assert time.monotonic() < deadline, f"nothing stored on {subject}"
        await asyncio.sleep(0.01)


def disclosures(call: Call) -> int:
    return sum(DISCLOSURE_CORE in t for t in call.texts())


async def test_a_killed_policy_replica_loses_no_sentence_and_keeps_the_disclosure(
    fresh_nats: str, service_env: dict[str, str], tmp_path: Path
) -> None:
    env = dict(
        service_env,
        PA_POLICY_DB=str(tmp_path / "policy.sqlite3"),
        PA_POLICY_SIGNING_KEY_FILE=SIGNING_KEY_FILE,
        # as its own bus user: the takeover's state and replay need only policy's permissions
        **BusAuth.for_role(Path(os.environ[ENV_AUTH_DIR]), bus_auth.PROVISIONER).env(),
    )
    cmd = ["-m", "phoneagent.cli", "serve", "policy"]
    procs = {r: spawn_replica(cmd, env, fresh_nats, r, tmp_path) for r in ("policy-a", "policy-b")}
    bus = Bus("dialog-and-edge")
    try:
        for proc, status in procs.values():
            await wait_replica_ready(status, proc)
        await bus.connect(fresh_nats)
        heard_before, played_in_gap, first_in_gap, opted_out = await calls_owned_by(bus, "policy-a", 4)
        arrivals = Arrivals()
        await bus.subscribe(subjects.say(heard_before.call_id), speech_pb2.AgentText, arrivals.on_say)

        # Before the kill: two calls got their greeting (with the disclosure); one caller heard it.
        for call in (heard_before, played_in_gap):
            await call.agent(1, "Hello, this is the dental clinic.")
        await wait_for(lambda: all(disclosures(c) == 1 for c in (heard_before, played_in_gap)), timeout=10)
        await heard_before.played(1)
        await wait_for(heard_before.directives, timeout=10)  # heard: the recording notice follows
        # The first caller's reply is going out sentence by sentence when the owner dies.
        reply = [f"Sentence {i} of the answer." for i in range(12)]
        meta = common_pb2.EventMeta(call_id=heard_before.call_id, generation_id=2)

        async def speak() -> None:
            for seq, text in enumerate(reply):
                msg = speech_pb2.AgentText(meta=meta, sentence_seq=seq, text=text)
                await bus.publish(subjects.reply(heard_before.call_id), msg)
                await asyncio.sleep(SENTENCE_EVERY_S)

        speaking = asyncio.create_task(speak())
        await wait_for(lambda: "Sentence 2 of the answer." in heard_before.texts(), timeout=10)
        await asyncio.sleep(SENTENCE_EVERY_S / 4)  # between two sentences: the third has been handled
        killed_at = time.monotonic()
        os.kill(procs["policy-a"][0].pid, signal.SIGKILL)

        # While nobody gates the dead replica's calls: a playback report and a first sentence.
        await played_in_gap.played(1)
        # The report reached the server before the next reply (they travel on two connections).
        await until_stored(bus, subjects.control_event(played_in_gap.call_id, "playback_done"))
        await played_in_gap.agent(2, "How can I help you today?")
        await first_in_gap.agent(1, "Hello, you have reached the clinic.")
        await opted_out.caller(1, "Please stop calling me and put me on your do not call list.")
        await speaking

        await wait_for(lambda: heard_before.texts()[-1:] == [reply[-1]], timeout=15)
        await wait_for(lambda: "How can I help you today?" in played_in_gap.texts(), timeout=15)
        await wait_for(
            lambda: any("you have reached the clinic" in t for t in first_in_gap.texts()), timeout=15
        )

        # Every sentence said, in order, once; no silence longer than 2 s across the takeover.
        said = [t for t in heard_before.texts() if t.startswith("Sentence")]
        assert said == reply, said
        last = arrivals.times[-1]
        silence = arrivals.longest_silence(killed_at - SENTENCE_EVERY_S, last)
        assert silence < MAX_SILENCE_S, f"{silence:.2f} s of silence"
        # The disclosure: once per call, never again after the takeover, never skipped.
        assert [disclosures(c) for c in (heard_before, played_in_gap, first_in_gap)] == [1, 1, 1]
        assert played_in_gap.texts()[-1] == "How can I help you today?"
        assert first_in_gap.texts()[0].startswith(DISCLOSURE_CORE)
        # The opt-out said during the takeover: answered by the survivor, once.
        found = await wait_for(opted_out.directives, timeout=15)
        assert found[0].action == control_pb2.DIRECTIVE_ACTION_SAY_AND_HANG_UP
        assert found[0].text == OPT_OUT_CONFIRMATION and found[0].turn_id == 1
        await opted_out.caller(
            1, "Please stop calling me and put me on your do not call list."
        )  # a re-delivery
        await asyncio.sleep(0.5)
        assert len(opted_out.directives()) == 1, opted_out.directives()
        kv = await streams.sessions_kv(bus.jetstream(), "policy")
        for call in (heard_before, played_in_gap, first_in_gap, opted_out):
            assert b"policy-b" in ((await kv.get(call.call_id)).value or b"")
    finally:
        await bus.close()
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in procs.values():
            proc.wait(30)
