"""The race to create a call's record on PostgreSQL: one replica reads "no record yet", another
inserts the record and commits, then the first writes. The first must not overwrite the second's
change (under READ COMMITTED an UPDATE would find the new row); it gets a unique violation, reads
the record again, locked, and applies its change on top. Real PostgreSQL server."""

from __future__ import annotations

import threading

from phoneagent.records.builder import CallRecord, Turn
from phoneagent.records.store import RecordStore
from support.postgres import new_database


def test_record_created_meanwhile_by_another_replica_keeps_both_changes(pg_server: str) -> None:
    url = new_database(pg_server)
    first, second = RecordStore(url), RecordStore(url)
    first_read, second_done = threading.Event(), threading.Event()
    reads: list[bool] = []

    def first_change(rec: CallRecord) -> bool:
        reads.append(bool(rec.turns))
        first_read.set()
        assert second_done.wait(10)  # the other replica inserts and commits after our read
        rec.turns.append(Turn(role="caller", turn_id=2, text="from the first replica", ts_unix_ns=2))
        return True

    def second_change(rec: CallRecord) -> bool:
        rec.turns.append(Turn(role="caller", turn_id=1, text="from the second replica", ts_unix_ns=1))
        return True

    try:
        worker = threading.Thread(target=first.update, args=("race1", first_change))
        worker.start()
        assert first_read.wait(10)
        second.update("race1", second_change)
        second_done.set()
        worker.join(20)
        assert not worker.is_alive()
        rec = first.get("race1")
        assert rec is not None
        assert sorted(t.text for t in rec.turns) == ["from the first replica", "from the second replica"]
        assert reads == [False, True]  # the retry saw the other replica's record
    finally:
        first.close()
        second.close()
