"""Durable storage of call records (SQLite file by default, PostgreSQL by URL).

Reuses the scheduling domain's :class:`Database` handle. The schema is versioned in its own
``records_schema_version`` table, so records may share a PostgreSQL database with other
domains. Each record is one row: columns for listing and filtering, the full record as JSON.
"""

from __future__ import annotations

import builtins
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

from phoneagent.records.builder import CallRecord
from phoneagent.runtime.db import ConstraintViolation, Database, Tx

log = logging.getLogger(__name__)
DEFAULT_DB = "var/records.sqlite3"
_LOCK_ID = 74210652

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "call records",
        (
            """CREATE TABLE call_records (
                call_id TEXT PRIMARY KEY,
                agent TEXT NOT NULL DEFAULT '',
                direction TEXT NOT NULL DEFAULT '',
                outcome TEXT NOT NULL DEFAULT '',
                started_unix_ns BIGINT NOT NULL DEFAULT 0,
                ended_unix_ns BIGINT NOT NULL DEFAULT 0,
                body TEXT NOT NULL,
                updated_unix_ns BIGINT NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS call_records_by_start ON call_records (started_unix_ns)",
        ),
    ),
    (
        2,
        "webhook deliveries",
        (
            """CREATE TABLE webhook_deliveries (
                id TEXT PRIMARY KEY,
                call_id TEXT NOT NULL,
                agent TEXT NOT NULL,
                event TEXT NOT NULL,
                url TEXT NOT NULL,
                body TEXT NOT NULL,
                status TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_code INTEGER NOT NULL DEFAULT 0,
                last_error TEXT NOT NULL DEFAULT '',
                next_attempt_unix_ns BIGINT NOT NULL DEFAULT 0,
                created_unix_ns BIGINT NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS webhook_by_status"
            " ON webhook_deliveries (status, next_attempt_unix_ns)",
        ),
    ),
    (
        3,
        "post-call summaries",
        ("ALTER TABLE call_records ADD COLUMN summary TEXT NOT NULL DEFAULT ''",),
    ),
)


def _ensure_version_table(tx: Tx) -> None:
    if tx.dialect == "postgresql":
        tx.query("SELECT pg_advisory_xact_lock(?)", (_LOCK_ID,))
    tx.execute(
        "CREATE TABLE IF NOT EXISTS records_schema_version (version INTEGER PRIMARY KEY,"
        " description TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )


def migrate(db: Database) -> int:
    """Apply pending steps, each in its own transaction; returns the version in force."""
    version = 0
    for number, description, statements in MIGRATIONS:
        with db.transaction() as tx:
            _ensure_version_table(tx)
            if not tx.query("SELECT 1 FROM records_schema_version WHERE version = ?", (number,)):
                for sql in statements:
                    tx.execute(sql)
                applied = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                tx.execute(
                    "INSERT INTO records_schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                    (number, description, applied),
                )
                log.info("records schema step applied", extra={"version": number})
            version = number
    return version


@dataclass(frozen=True)
class Delivery:
    """One webhook delivery: a signed POST of ``body`` to ``url``, retried until it succeeds."""

    id: str
    call_id: str
    agent: str
    event: str
    url: str
    body: str
    status: str  # "pending", "delivered" or "failed"
    attempts: int
    last_code: int
    last_error: str
    next_attempt_unix_ns: int


_DELIVERY_COLS = (
    "id, call_id, agent, event, url, body, status, attempts, last_code, last_error, next_attempt_unix_ns"
)


@dataclass(frozen=True)
class Summary:
    call_id: str
    agent: str
    direction: str
    outcome: str
    started_unix_ns: int
    ended_unix_ns: int


@dataclass(frozen=True)
class CallFilter:
    """Which calls to list: each field that is set must match (an empty filter lists all)."""

    outcome: str = ""
    direction: str = ""
    agent: str = ""
    started_from_ns: int = 0  # started at or after (Unix ns)
    started_before_ns: int = 0  # started before (Unix ns)
    live_only: bool = False  # started and not ended yet

    def sql(self) -> tuple[str, tuple[object, ...]]:
        """The WHERE clause (with a trailing space, or empty) and its parameters."""
        terms: list[str] = []
        params: list[object] = []
        for column, value in (
            ("outcome", self.outcome),
            ("direction", self.direction),
            ("agent", self.agent),
        ):
            if value:
                terms.append(f"{column} = ?")
                params.append(value)
        if self.started_from_ns:
            terms.append("started_unix_ns >= ?")
            params.append(self.started_from_ns)
        if self.started_before_ns:
            terms.append("started_unix_ns < ?")
            params.append(self.started_before_ns)
        if self.live_only:
            terms.append("started_unix_ns > 0 AND ended_unix_ns = 0")
        return ("WHERE " + " AND ".join(terms) + " " if terms else ""), tuple(params)


class RecordStore:
    def __init__(self, url: str = DEFAULT_DB) -> None:
        self.db = Database(url)
        migrate(self.db)

    def close(self) -> None:
        self.db.close()

    def get(self, call_id: str) -> CallRecord | None:
        with self.db.transaction() as tx:
            return self._get(tx, call_id)

    @staticmethod
    def _get(tx: Tx, call_id: str, for_update: bool = False) -> CallRecord | None:
        lock = " FOR UPDATE" if for_update and tx.dialect == "postgresql" else ""
        rows = tx.query(f"SELECT body, summary FROM call_records WHERE call_id = ?{lock}", (call_id,))
        return _record(rows[0][0], rows[0][1]) if rows else None

    def update(self, call_id: str, change: Callable[[CallRecord], bool]) -> CallRecord | None:
        """Read, change and write one call's record in a single transaction.

        Consumers of different streams (and replicas) change the same record concurrently; a
        separate read and write would let one overwrite the other's change. ``change`` gets the
        stored record (or a new one) and returns False to leave it as it was; the changed
        record is returned, or None when nothing was written.
        """
        for attempt in (1, 2):
            try:
                with self.db.transaction() as tx:
                    stored = self._get(tx, call_id, for_update=True)
                    rec = stored or CallRecord(call_id=call_id)
                    if not change(rec):
                        return None
                    # A record that did not exist is inserted, never updated: under READ
                    # COMMITTED an UPDATE here would find a row another replica inserted since
                    # our read, and overwrite its change with ours.
                    self._put(tx, rec, new=stored is None)
                return rec
            except ConstraintViolation:
                # Another replica inserted this new record first (a row lock cannot cover a row
                # that does not exist yet): read it again, locked this time, and apply on top.
                if attempt == 2:
                    raise
        return None

    def set_summary(self, call_id: str, summary: dict[str, object]) -> bool:
        """Store a post-call summary in its own column, so a later event cannot overwrite it."""
        with self.db.transaction() as tx:
            return bool(
                tx.execute(
                    "UPDATE call_records SET summary = ?, updated_unix_ns = ? WHERE call_id = ?",
                    (json.dumps(summary, sort_keys=True), time.time_ns(), call_id),
                )
            )

    def enqueue_delivery(self, call_id: str, agent: str, event: str, url: str, body: str) -> str:
        delivery_id = uuid.uuid4().hex
        now = time.time_ns()
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO webhook_deliveries (id, call_id, agent, event, url, body, status, attempts,"
                " last_code, last_error, next_attempt_unix_ns, created_unix_ns)"
                " VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, 0, '', ?, ?)",
                (delivery_id, call_id, agent, event, url, body, now, now),
            )
        return delivery_id

    def due_deliveries(self, now_ns: int, limit: int = 32) -> list[Delivery]:
        with self.db.transaction() as tx:
            rows = tx.query(
                f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries WHERE status = 'pending'"
                " AND next_attempt_unix_ns <= ? ORDER BY next_attempt_unix_ns LIMIT ?",
                (now_ns, limit),
            )
        return [Delivery(*r) for r in rows]

    def next_delivery_at(self) -> int | None:
        """When the earliest pending delivery is due (Unix ns), or None when none is pending."""
        with self.db.transaction() as tx:
            rows = tx.query(
                "SELECT MIN(next_attempt_unix_ns) FROM webhook_deliveries WHERE status = 'pending'"
            )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def record_attempt(
        self, delivery_id: str, status: str, attempts: int, code: int, error: str, next_ns: int
    ) -> None:
        with self.db.transaction() as tx:
            tx.execute(
                "UPDATE webhook_deliveries SET status = ?, attempts = ?, last_code = ?, last_error = ?,"
                " next_attempt_unix_ns = ? WHERE id = ?",
                (status, attempts, code, error, next_ns, delivery_id),
            )

    def deliveries(self, call_id: str) -> list[Delivery]:
        with self.db.transaction() as tx:
            rows = tx.query(
                f"SELECT {_DELIVERY_COLS} FROM webhook_deliveries WHERE call_id = ? ORDER BY created_unix_ns",
                (call_id,),
            )
        return [Delivery(*r) for r in rows]

    def put(self, rec: CallRecord) -> None:
        with self.db.transaction() as tx:
            self._put(tx, rec)

    @staticmethod
    def _put(tx: Tx, rec: CallRecord, new: bool | None = None) -> None:
        """Write ``rec``: ``new`` True inserts (a unique violation if another writer was first),
        False updates, None updates or else inserts."""
        params = (
            rec.agent,
            rec.direction,
            rec.outcome,
            rec.started_unix_ns,
            rec.ended_unix_ns,
            rec.to_json(),
            time.time_ns(),
            rec.call_id,
        )
        updated = new is not True and tx.execute(
            "UPDATE call_records SET agent = ?, direction = ?, outcome = ?, started_unix_ns = ?,"
            " ended_unix_ns = ?, body = ?, updated_unix_ns = ? WHERE call_id = ?",
            params,
        )
        if not updated and new is not False:
            tx.execute(
                "INSERT INTO call_records (agent, direction, outcome, started_unix_ns, ended_unix_ns, body,"
                " updated_unix_ns, call_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                params,
            )

    def list(self, limit: int = 20, active_only: bool = False) -> list[Summary]:
        where = "WHERE ended_unix_ns = 0 " if active_only else ""
        with self.db.transaction() as tx:
            rows = tx.query(
                "SELECT call_id, agent, direction, outcome, started_unix_ns, ended_unix_ns FROM call_records "
                f"{where}ORDER BY started_unix_ns DESC, call_id DESC LIMIT ?",
                (max(1, min(limit, 10_000)),),
            )
        return [Summary(r[0], r[1], r[2], r[3], int(r[4]), int(r[5])) for r in rows]

    def records(self, limit: int = 100, active_only: bool = False) -> builtins.list[CallRecord]:
        """Whole records, newest first; ``active_only``: started and not ended yet."""
        where = "WHERE started_unix_ns > 0 AND ended_unix_ns = 0 " if active_only else ""
        with self.db.transaction() as tx:
            rows = tx.query(
                f"SELECT body, summary FROM call_records {where}"
                "ORDER BY started_unix_ns DESC, call_id DESC LIMIT ?",
                (max(1, min(limit, 10_000)),),
            )
        return [_record(body, summary) for body, summary in rows]

    def search(self, flt: CallFilter, limit: int = 100) -> builtins.list[CallRecord]:
        """Whole records matching ``flt``, newest first (at most ``limit``)."""
        where, params = flt.sql()
        with self.db.transaction() as tx:
            rows = tx.query(
                f"SELECT body, summary FROM call_records {where}"
                "ORDER BY started_unix_ns DESC, call_id DESC LIMIT ?",
                (*params, max(1, min(limit, 10_000))),
            )
        return [_record(body, summary) for body, summary in rows]

    def agents(self) -> builtins.list[str]:
        """The agents that have call records, by name."""
        with self.db.transaction() as tx:
            rows = tx.query("SELECT DISTINCT agent FROM call_records WHERE agent <> '' ORDER BY agent")
        return [str(r[0]) for r in rows]

    def purge(self, retention_days: float, now_ns: int | None = None) -> int:
        """Delete records that started before the retention window, and their local recordings."""
        if retention_days <= 0:
            return 0
        cutoff = (now_ns or time.time_ns()) - int(retention_days * 86400 * 1e9)
        with self.db.transaction() as tx:
            rows = tx.query(
                "SELECT call_id, body FROM call_records WHERE started_unix_ns > 0 AND started_unix_ns < ?",
                (cutoff,),
            )
            for call_id, _ in rows:
                tx.execute("DELETE FROM call_records WHERE call_id = ?", (call_id,))
                tx.execute("DELETE FROM webhook_deliveries WHERE call_id = ?", (call_id,))
        for _, body in rows:
            delete_local_recording(CallRecord.from_json(body).recording.get("uri", ""))
        if rows:
            log.info("call records purged", extra={"count": len(rows), "retention_days": retention_days})
        return len(rows)


def _record(body: str, summary: str) -> CallRecord:
    rec = CallRecord.from_json(body)
    if summary:
        rec.summary = json.loads(summary)
    return rec


def delete_local_recording(uri: str) -> bool:
    """Remove a recording stored as a local path or file:// URI; other schemes are left alone."""
    if not uri:
        return False
    parsed = urlparse(uri)
    if parsed.scheme not in ("", "file"):
        return False
    path = Path(parsed.path if parsed.scheme == "file" else uri)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        log.warning("recording not deleted", extra={"reason": "os_error"})
        return False
    return True
