"""``phone-agent calls list`` / ``calls show`` against a record store file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from phoneagent.cli import main
from phoneagent.records.builder import CallRecord, Turn
from phoneagent.records.store import RecordStore


def test_records_cli_list_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "r.sqlite3")
    store = RecordStore(db)
    now = time.time_ns()
    store.put(CallRecord(call_id="cold", agent="clinic", direction="inbound", started_unix_ns=now - 10**12))
    store.put(
        CallRecord(
            call_id="cnew",
            agent="clinic",
            direction="outbound",
            started_unix_ns=now,
            ended_unix_ns=now + 5 * 10**9,
            outcome="booked",
            turns=[Turn("caller", 1, "hello", now, None), Turn("agent", 1, "hi there", now, 420)],
        )
    )
    store.close()
    assert main(["calls", "--db", db, "list", "--limit", "1"]) == 0
    out = capsys.readouterr().out
    assert "cnew" in out and "booked" in out and "cold" not in out
    assert main(["calls", "--db", db, "show", "cnew"]) == 0
    out = capsys.readouterr().out
    assert "hi there" in out and "(420 ms)" in out
    assert main(["calls", "--db", db, "show", "missing"]) == 1
