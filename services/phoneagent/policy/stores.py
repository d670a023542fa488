"""Durable policy stores: internal DNC, imported DNC lists, consent, attempt log.

They live on the runtime's database layer (:class:`~phoneagent.runtime.db.Database`): a SQLite
file by default, PostgreSQL by URL (``PA_POLICY_DB``), which every policy replica shares. One
database holds all four tables, versioned in ``policy_schema_version``; every write commits
before returning, so a number added to the DNC list is still there after a crash. All times are
timezone-aware datetimes at the interface and UTC epoch seconds in the database. Numbers are
stored in E.164 form, normalised on the way in, so look-ups match however a number was typed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from phoneagent.runtime.csvrows import (
    CsvSource,
    ImportReport,
    RowError,
    cell,
    find_number_column,
    numbered,
    read_rows,
)
from phoneagent.runtime.db import Database, Tx
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError, Unavailable
from phoneagent.runtime.numbers import NANP_COUNTRY_CODE, normalize_e164

log = logging.getLogger(__name__)
_LOCK_ID = 74210653  # PostgreSQL advisory lock serialising this schema's migrations


def _schema(dialect: str) -> tuple[str, ...]:
    serial = "BIGSERIAL PRIMARY KEY" if dialect == "postgresql" else "INTEGER PRIMARY KEY"
    return (
        "CREATE TABLE IF NOT EXISTS dnc (number TEXT PRIMARY KEY, source TEXT NOT NULL,"
        " added_at DOUBLE PRECISION NOT NULL)",
        "CREATE TABLE IF NOT EXISTS dnc_imported (list_name TEXT NOT NULL, number TEXT NOT NULL,"
        " imported_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (list_name, number))",
        "CREATE INDEX IF NOT EXISTS dnc_imported_number ON dnc_imported (number)",
        f"CREATE TABLE IF NOT EXISTS consent (id {serial}, number TEXT NOT NULL, purpose TEXT NOT NULL,"
        " source TEXT NOT NULL, granted_at DOUBLE PRECISION NOT NULL, expires_at DOUBLE PRECISION,"
        " revoked_at DOUBLE PRECISION)",
        "CREATE INDEX IF NOT EXISTS consent_number ON consent (number, purpose)",
        f"CREATE TABLE IF NOT EXISTS attempts (id {serial}, number TEXT NOT NULL,"
        " at DOUBLE PRECISION NOT NULL, campaign_id TEXT NOT NULL, outcome TEXT NOT NULL)",
        "CREATE INDEX IF NOT EXISTS attempts_number ON attempts (number, at)",
    )


def migrate(db: Database) -> None:
    """Create the tables (a SQLite file from an older release already has them: IF NOT EXISTS)."""
    with db.transaction() as tx:
        if tx.dialect == "postgresql":
            tx.query("SELECT pg_advisory_xact_lock(?)", (_LOCK_ID,))
        tx.execute(
            "CREATE TABLE IF NOT EXISTS policy_schema_version (version INTEGER PRIMARY KEY,"
            " description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        if tx.query("SELECT 1 FROM policy_schema_version WHERE version = 1"):
            return
        for sql in _schema(tx.dialect):
            tx.execute(sql)
        tx.execute(
            "INSERT INTO policy_schema_version (version, description, applied_at) VALUES (1, ?, ?)",
            ("dnc, imported lists, consent, attempts", datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")),
        )


def to_epoch(dt: datetime) -> float:
    if not isinstance(dt, datetime) or dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidArgument("times must be timezone-aware datetimes")
    return dt.timestamp()


def from_epoch(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _required_text(value: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(f"{what} is required")
    return value.strip()


class _Db:
    """The stores' shared handle: writes in one transaction each, reads in a short one."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self.db.transaction() as tx:
            yield tx

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.db.transaction() as tx:
            return tx.query(sql, params)

    def close(self) -> None:
        self.db.close()


@dataclass(frozen=True)
class DncEntry:
    number: str
    source: str
    added_at: datetime


class DncStore:
    """The internal do-not-call list (opt-outs said on calls, operator additions)."""

    def __init__(self, db: _Db, default_country: str) -> None:
        self._db = db
        self._cc = default_country

    def add(self, number: str, source: str, at: datetime) -> str:
        """Add ``number``; the first entry's source and time are kept. Returns the E.164 form."""
        e164 = normalize_e164(number, self._cc)
        src = _required_text(source, "DNC source")
        with self._db.write() as tx:
            tx.execute(
                "INSERT INTO dnc (number, source, added_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                (e164, src, to_epoch(at)),
            )
        log.info("number added to internal DNC", extra={"dnc_source": src})
        return e164

    def remove(self, number: str) -> bool:
        e164 = normalize_e164(number, self._cc)
        with self._db.write() as tx:
            return tx.execute("DELETE FROM dnc WHERE number = ?", (e164,)) > 0

    def entries(self) -> list[DncEntry]:
        """Every internal DNC entry, oldest first."""
        rows = self._db.query("SELECT number, source, added_at FROM dnc ORDER BY added_at, number")
        return [DncEntry(number=n, source=s, added_at=datetime.fromtimestamp(a, UTC)) for n, s, a in rows]

    def lookup(self, number: str) -> DncEntry | None:
        e164 = normalize_e164(number, self._cc)
        rows = self._db.query("SELECT number, source, added_at FROM dnc WHERE number = ?", (e164,))
        if not rows:
            return None
        num, source, added = rows[0]
        return DncEntry(number=num, source=source, added_at=datetime.fromtimestamp(added, UTC))


class ImportedDncStore:
    """Do-not-call lists imported from files (national registry extracts, client suppression lists)."""

    def __init__(self, db: _Db, default_country: str) -> None:
        self._db = db
        self._cc = default_country

    def import_csv(
        self, list_name: str, source: CsvSource, at: datetime, *, replace: bool = False
    ) -> ImportReport:
        """Import numbers from a CSV (a ``number``/``phone`` column, or the first column when there is
        no header). Bad rows are reported with their row number and skipped; good rows are kept.
        ``replace`` drops the list's previous contents in the same transaction."""
        name = _required_text(list_name, "DNC list name")
        rows = read_rows(source)
        report = ImportReport()
        numbers = _numbers_from_rows(rows, self._cc, report)
        ts = to_epoch(at)
        count = "SELECT COUNT(*) FROM dnc_imported WHERE list_name = ?"
        with self._db.write() as tx:
            if replace:
                tx.execute("DELETE FROM dnc_imported WHERE list_name = ?", (name,))
            before = int(tx.query(count, (name,))[0][0])
            tx.executemany(
                "INSERT INTO dnc_imported (list_name, number, imported_at) VALUES (?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                [(name, n, ts) for n in numbers],
            )
            report.imported = int(tx.query(count, (name,))[0][0]) - before
        report.duplicates += len(numbers) - report.imported
        log.info(
            "DNC list imported",
            extra={
                "dnc_list": name,
                "imported": report.imported,
                "rejected": report.rejected,
                "duplicates": report.duplicates,
            },
        )
        return report

    def lists_containing(self, number: str) -> list[str]:
        e164 = normalize_e164(number, self._cc)
        rows = self._db.query(
            "SELECT list_name FROM dnc_imported WHERE number = ? ORDER BY list_name", (e164,)
        )
        return [r[0] for r in rows]

    def lists(self) -> list[tuple[str, int]]:
        """Every imported list with its number count."""
        rows = self._db.query(
            "SELECT list_name, COUNT(*) FROM dnc_imported GROUP BY list_name ORDER BY list_name"
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    def count(self, list_name: str) -> int:
        rows = self._db.query("SELECT COUNT(*) FROM dnc_imported WHERE list_name = ?", (list_name,))
        return int(rows[0][0])


def _numbers_from_rows(rows: list[list[str]], cc: str, report: ImportReport) -> list[str]:
    if not rows:
        return []
    col = find_number_column(rows[0])
    first = 1
    if col is not None:
        rows, first = rows[1:], 2
    else:
        col = 0
    seen: set[str] = set()
    out: list[str] = []
    for row_no, row in numbered(rows, first):
        try:
            e164 = normalize_e164(cell(row, col), cc)
        except InvalidArgument as exc:
            report.errors.append(RowError(row=row_no, reason=exc.message))
            continue
        if e164 in seen:
            report.duplicates += 1
            continue
        seen.add(e164)
        out.append(e164)
    return out


@dataclass(frozen=True)
class ConsentRecord:
    id: int
    number: str
    purpose: str
    source: str
    granted_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def status_at(self, now: datetime) -> str:
        """``valid``, ``revoked``, ``expired`` or ``not_yet_granted`` at ``now``."""
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.granted_at > now:
            return "not_yet_granted"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "valid"


def _consent_record(r: tuple[Any, ...]) -> ConsentRecord:
    return ConsentRecord(
        id=r[0],
        number=r[1],
        purpose=r[2],
        source=r[3],
        granted_at=datetime.fromtimestamp(r[4], UTC),
        expires_at=from_epoch(r[5]),
        revoked_at=from_epoch(r[6]),
    )


_INSERT_CONSENT = (
    "INSERT INTO consent (number, purpose, source, granted_at, expires_at) VALUES (?, ?, ?, ?, ?)"
)


class ConsentStore:
    """Prior express consent records: who agreed to be called for which purpose, where and when."""

    def __init__(self, db: _Db, default_country: str) -> None:
        self._db = db
        self._cc = default_country

    def grant(
        self, number: str, purpose: str, source: str, granted_at: datetime, expires_at: datetime | None = None
    ) -> int:
        row = self.check(number, purpose, source, granted_at, expires_at)
        with self._db.write() as tx:
            return int(tx.query(_INSERT_CONSENT + " RETURNING id", row)[0][0])

    def check(
        self, number: str, purpose: str, source: str, granted_at: datetime, expires_at: datetime | None = None
    ) -> tuple[str, str, str, float, float | None]:
        """A validated consent row for :meth:`grant_all`; InvalidArgument says what is wrong."""
        e164 = normalize_e164(number, self._cc)
        granted = to_epoch(granted_at)
        expires = to_epoch(expires_at) if expires_at is not None else None
        if expires is not None and expires <= granted:
            raise InvalidArgument("consent must expire after it was granted")
        purpose = _required_text(purpose, "consent purpose")
        return e164, purpose, _required_text(source, "consent source"), granted, expires

    def grant_all(self, rows: Sequence[tuple[str, str, str, float, float | None]]) -> int:
        """Store rows from :meth:`check` in one transaction: all of them or (on error) none."""
        with self._db.write() as tx:
            tx.executemany(_INSERT_CONSENT, rows)
        return len(rows)

    def all_records(self, number: str) -> list[ConsentRecord]:
        """Every consent record of ``number``, all purposes, newest first."""
        e164 = normalize_e164(number, self._cc)
        rows = self._db.query(
            "SELECT id, number, purpose, source, granted_at, expires_at, revoked_at FROM consent "
            "WHERE number = ? ORDER BY granted_at DESC, id DESC",
            (e164,),
        )
        return [_consent_record(r) for r in rows]

    def revoke(self, number: str, purpose: str | None, at: datetime) -> int:
        """Revoke every open consent of ``number`` (for ``purpose``, or all purposes when None)."""
        e164 = normalize_e164(number, self._cc)
        sql = "UPDATE consent SET revoked_at = ? WHERE number = ? AND revoked_at IS NULL"
        params: list[Any] = [to_epoch(at), e164]
        if purpose is not None:
            sql += " AND purpose = ?"
            params.append(purpose)
        with self._db.write() as tx:
            return tx.execute(sql, params)

    def records(self, number: str, purpose: str) -> list[ConsentRecord]:
        e164 = normalize_e164(number, self._cc)
        rows = self._db.query(
            "SELECT id, number, purpose, source, granted_at, expires_at, revoked_at FROM consent "
            "WHERE number = ? AND purpose = ? ORDER BY granted_at DESC, id DESC",
            (e164, purpose),
        )
        return [_consent_record(r) for r in rows]


class AttemptLog:
    """Every dial attempt, for per-day and lifetime caps."""

    def __init__(self, db: _Db, default_country: str) -> None:
        self._db = db
        self._cc = default_country

    def record(self, number: str, at: datetime, campaign_id: str = "", outcome: str = "dialled") -> None:
        e164 = normalize_e164(number, self._cc)
        with self._db.write() as tx:
            tx.execute(
                "INSERT INTO attempts (number, at, campaign_id, outcome) VALUES (?, ?, ?, ?)",
                (e164, to_epoch(at), campaign_id or "", outcome or ""),
            )

    def count(self, number: str, since: datetime | None = None, until: datetime | None = None) -> int:
        """Attempts to ``number`` with since <= at < until (either bound optional)."""
        e164 = normalize_e164(number, self._cc)
        sql = "SELECT COUNT(*) FROM attempts WHERE number = ?"
        params: list[Any] = [e164]
        if since is not None:
            sql += " AND at >= ?"
            params.append(to_epoch(since))
        if until is not None:
            sql += " AND at < ?"
            params.append(to_epoch(until))
        return int(self._db.query(sql, params)[0][0])


class PolicyStores:
    """The four stores over one database: a SQLite file path or ``sqlite:///`` URL (``":memory:"``
    for tests) or a ``postgresql://`` URL."""

    def __init__(self, url: str | Path, default_country: str = NANP_COUNTRY_CODE) -> None:
        try:
            db = Database(str(url))
        except PhoneAgentError:
            raise
        except Exception as exc:
            raise Unavailable("policy database cannot be opened") from exc
        try:
            migrate(db)
        except BaseException:
            db.close()
            raise
        self._db = _Db(db)
        self.dnc = DncStore(self._db, default_country)
        self.imported_dnc = ImportedDncStore(self._db, default_country)
        self.consent = ConsentStore(self._db, default_country)
        self.attempts = AttemptLog(self._db, default_country)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> PolicyStores:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
