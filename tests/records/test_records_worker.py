"""Call records built from a real nats-server's streams by the durable records worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from phoneagent.records.builder import CallRecord
from phoneagent.records.store import RecordStore
from phoneagent.records.worker import RecordsSettings, RecordsWorker, fold
from phoneagent.runtime import subjects
from phoneagent.runtime.bus import Bus
from phoneagent.v1 import common_pb2, media_pb2, policy_pb2, speech_pb2
from support.records_sample_call import publish_call

CALL = "crec1"


def meta(turn: int = 0) -> common_pb2.EventMeta:
    return common_pb2.EventMeta(call_id=CALL, turn_id=turn, ts_unix_ns=time.time_ns())


async def wait_for(store: RecordStore, check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = await asyncio.to_thread(store.get, CALL)
        if rec is not None and check(rec):
            return rec
        await asyncio.sleep(0.05)
    raise AssertionError("record did not reach the expected state in time")


async def test_records_complete_call_and_restart(js_bus: Bus, tmp_path: Path) -> None:
    settings = RecordsSettings(db=str(tmp_path / "records.sqlite3"), retention_days=0)
    store = RecordStore(settings.db)
    worker = RecordsWorker(js_bus.jetstream(), store, settings)
    await worker.start()
    t0 = time.time_ns()
    await publish_call(js_bus, CALL, t0)
    rec = await wait_for(store, lambda r: r.ended)
    assert rec.direction == "inbound" and rec.agent == "dental_clinic"
    assert rec.from_number == "…67" and "5551234567" not in rec.to_json()
    assert rec.end_reason == "caller_hangup" and rec.outcome == "booked"
    roles = [(t.role, t.text) for t in rec.turns]
    assert roles[0] == ("agent", "Hello, dental clinic.")
    assert roles[1][0] == "caller" and "[PHONE" in roles[1][1]
    assert roles[2] == ("agent", "Sure. Tuesday at nine is booked.")
    assert rec.turns[2].latency_ms == 650
    # The answer's time points, from the transcript, the first sentence and the edge's playout,
    # and what the caller's barge-in cut off ("Sure. Tuesday" of the two sentences was heard).
    ms = 1_000_000
    assert rec.timings[1] == {
        "speech_start": t0 + 1000 * ms,
        "caller_stop": t0 + 1950 * ms,
        "speech_end": t0 + 2000 * ms,
        "endpoint": t0 + 2150 * ms,
        "asr_compute_ms": 40,
        "asr_final": t0 + 2200 * ms,
        "llm_request": t0 + 2210 * ms,
        "llm_first_token": t0 + 2500 * ms,
        "first_sentence": t0 + 2650 * ms,
        "generation": 2,
        "tts_first_audio": t0 + 2800 * ms,
        "tts_synth_ms": 90,
        "first_rtp": t0 + 2850 * ms,
    }
    answer = rec.turns[2]
    assert answer.text[: answer.heard_chars] == "Sure. Tuesday" and answer.played_ms == 1100
    assert (
        rec.tools[0]["name"] == "book_appointment"
        and rec.tools[0]["ok"]
        and rec.tools[0]["status"] == "booked"
    )
    await worker.stop()
    store.close()

    # While the worker is down: the recording is stored and an opt-out is audited.
    await js_bus.publish(
        subjects.recording(CALL),
        media_pb2.RecordingStored(meta=meta(), uri=str(tmp_path / "rec.wav"), format="wav", duration_ms=8900),
    )
    await js_bus.publish(
        subjects.audit(CALL),
        policy_pb2.PolicyDecision(
            meta=meta(),
            decision_id="d1",
            decision=policy_pb2.DECISION_ALLOW,
            subject="opt_out",
            rule="opt_out",
        ),
    )
    store = RecordStore(settings.db)
    worker = RecordsWorker(js_bus.jetstream(), store, settings)
    await worker.start()
    try:
        rec = await wait_for(store, lambda r: bool(r.recording) and bool(r.decisions))
        assert rec.recording["uri"].endswith("rec.wav") and rec.outcome == "opted_out"
        assert len(rec.turns) == 3  # nothing applied twice after the restart
        assert [s.call_id for s in store.list(limit=5)] == [CALL]
    finally:
        await worker.stop()
        store.close()


def test_records_purge_deletes_old_records_and_local_recordings(tmp_path: Path) -> None:
    from phoneagent.records.builder import CallRecord

    wav = tmp_path / "old.wav"
    wav.write_bytes(b"RIFF")
    store = RecordStore(f"sqlite:///{tmp_path / 'r.sqlite3'}")
    now = time.time_ns()
    old = CallRecord(call_id="old", started_unix_ns=now - 40 * 86400 * 10**9, recording={"uri": str(wav)})
    store.put(old)
    store.put(CallRecord(call_id="new", started_unix_ns=now))
    assert store.purge(30, now) == 1
    assert store.get("old") is None and store.get("new") is not None and not wav.exists()
    store.close()


def _transcript(turn: int) -> bytes:
    return speech_pb2.Transcript(meta=meta(turn), final=True, text=f"turn {turn}").SerializeToString()


def _decision(n: int) -> bytes:
    return policy_pb2.PolicyDecision(
        meta=meta(), decision_id=f"d{n}", decision=policy_pb2.DECISION_ALLOW, subject="disclosure"
    ).SerializeToString()


def test_records_concurrent_consumers_lose_no_change(tmp_path: Path) -> None:
    """The PA_CALLS and PA_AUDIT consumers change one record at the same time (the cause of
    events going missing after a restart): every change must survive."""
    from concurrent.futures import ThreadPoolExecutor

    settings = RecordsSettings(db=str(tmp_path / "r.sqlite3"), retention_days=0)
    store = RecordStore(settings.db)
    worker = RecordsWorker(None, store, settings)
    n = 60

    def calls() -> None:
        for i in range(1, n + 1):
            worker.apply(subjects.CALLS_STREAM, subjects.record(CALL, "transcript"), _transcript(i), {}, i)

    def audit() -> None:
        for i in range(1, n + 1):
            worker.apply(subjects.AUDIT_STREAM, subjects.audit(CALL), _decision(i), {}, i)

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(calls), pool.submit(audit)]:
            f.result(timeout=60)
    rec = store.get(CALL)
    assert rec is not None
    assert len(rec.turns) == n and len(rec.decisions) == n
    store.close()


def test_records_late_redelivery_is_applied_once(tmp_path: Path) -> None:
    """A message refused while the database was busy comes back after newer ones: it is still
    applied, and a second copy of any message is not."""
    settings = RecordsSettings(db=str(tmp_path / "r.sqlite3"), retention_days=0)
    store = RecordStore(settings.db)
    worker = RecordsWorker(None, store, settings)
    subject = subjects.record(CALL, "transcript")
    assert worker.apply(subjects.CALLS_STREAM, subject, _transcript(2), {}, 7)[1] is not None
    assert worker.apply(subjects.CALLS_STREAM, subject, _transcript(1), {}, 5)[1] is not None  # late
    assert worker.apply(subjects.CALLS_STREAM, subject, _transcript(1), {}, 5)[1] is None  # again
    assert worker.apply(subjects.CALLS_STREAM, subject, _transcript(2), {}, 7)[1] is None
    rec = store.get(CALL)
    assert rec is not None and sorted(t.turn_id for t in rec.turns) == [1, 2]
    assert "applied_seqs" not in rec.public_dict() and "positions" not in rec.public_dict()
    store.close()


def test_records_two_replicas_on_postgresql_lose_no_change(pg_server: str) -> None:
    """Two records workers with their own connections (two replicas) change the same new record
    on PostgreSQL at once: the row lock serialises them, and the race to insert the record
    first is settled inside the store, so no change is lost and no message needs a redelivery."""
    from concurrent.futures import ThreadPoolExecutor

    from support.postgres import new_database

    url = new_database(pg_server)
    settings = RecordsSettings(db=url, retention_days=0)
    stores = [RecordStore(url), RecordStore(url)]
    workers = [RecordsWorker(None, s, settings) for s in stores]
    n = 40
    for call in range(3):  # each call id starts with the insert race
        call_id = f"{CALL}pg{call}"

        def calls(cid: str = call_id) -> None:
            for i in range(1, n + 1):
                data = speech_pb2.Transcript(
                    meta=common_pb2.EventMeta(call_id=cid, turn_id=i), final=True, text=f"turn {i}"
                ).SerializeToString()
                workers[0].apply(subjects.CALLS_STREAM, subjects.record(cid, "transcript"), data, {}, i)

        def audit(cid: str = call_id) -> None:
            for i in range(1, n + 1):
                data = policy_pb2.PolicyDecision(
                    meta=common_pb2.EventMeta(call_id=cid), decision_id=f"d{i}", subject="disclosure"
                ).SerializeToString()
                workers[1].apply(subjects.AUDIT_STREAM, subjects.audit(cid), data, {}, i)

        with ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(calls), pool.submit(audit)]:
                f.result(timeout=120)
        rec = stores[0].get(call_id)
        assert rec is not None
        assert len(rec.turns) == n and len(rec.decisions) == n
    for s in stores:
        s.close()


def test_the_records_keep_the_business_name_in_what_was_said() -> None:
    rec = CallRecord(CALL)
    greeting = "Thank you for calling Bright Smile Dental."
    fold(rec, "say", speech_pb2.AgentText(meta=meta(), text=greeting), ("Bright Smile Dental",))
    fold(rec, "transcript", speech_pb2.Transcript(meta=meta(1), final=True, text="I'm Maria Lopez."))
    assert [t.text for t in rec.turns] == [greeting, "I'm [NAME]."]
