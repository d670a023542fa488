"""A small portable database handle: SQLite by default, PostgreSQL by URL.

SQL is written once with ``?`` placeholders and portable types; for PostgreSQL the
placeholders become ``%s``. psycopg 3 is imported only when a ``postgresql://`` URL
is opened. Constraint violations surface as :class:`ConstraintViolation`, lost or
locked databases as :class:`phoneagent.runtime.errors.Unavailable` (retryable).

Nothing waits on the database longer than ``timeout_s``: the handle's own lock, SQLite's
busy wait and PostgreSQL's ``statement_timeout`` and ``lock_timeout`` all end there, and the
transaction is rolled back (so a caller that gave up waiting never finds a write done later).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError, Unavailable

log = logging.getLogger(__name__)
Row = tuple[Any, ...]


class ConstraintViolation(PhoneAgentError):
    """A unique or foreign-key constraint refused a write."""

    def __init__(self, message: str = "constraint violated") -> None:
        super().__init__(ErrorKind.INVALID_ARGUMENT, message)


class Tx:
    """One open transaction: ``execute`` and ``query`` with ``?`` placeholders."""

    def __init__(self, cursor: Any, dialect: str) -> None:
        self._cur = cursor
        self.dialect = dialect

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgresql" else sql

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self._cur.execute(self._sql(sql), tuple(params))
        return int(self._cur.rowcount or 0)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cur.executemany(self._sql(sql), [tuple(r) for r in rows])

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self._cur.execute(self._sql(sql), tuple(params))
        return [tuple(r) for r in self._cur.fetchall()]


DEFAULT_TIMEOUT_S = 10.0


class Database:
    """A single connection guarded by a lock; each transaction is short."""

    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        if timeout_s <= 0:
            raise InvalidArgument("the database timeout must be positive")
        self.url = url
        self.dialect = "postgresql" if url.startswith(("postgresql://", "postgres://")) else "sqlite"
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._conn: Any = None
        self._pg_errors: Any = None
        self._connect()

    def _connect(self) -> None:
        if self.dialect == "postgresql":
            try:
                import psycopg
            except ImportError as exc:
                raise InvalidArgument(
                    "a postgresql:// database needs psycopg: pip install 'psycopg[binary]'"
                ) from exc
            self._pg_errors = psycopg
            try:
                ms = max(1, int(self.timeout_s * 1000))
                self._conn = psycopg.connect(
                    self.url,
                    autocommit=True,
                    connect_timeout=max(2, int(self.timeout_s)),
                    options=f"-c statement_timeout={ms} -c lock_timeout={ms}",
                )
            except psycopg.OperationalError:
                raise Unavailable("cannot connect to the PostgreSQL database") from None
            return
        path = _sqlite_path(self.url)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=self.timeout_s
        )
        self._conn.execute("PRAGMA foreign_keys = ON")
        if path != ":memory:":
            self._conn.execute("PRAGMA journal_mode = WAL")

    @contextmanager
    def transaction(self) -> Iterator[Tx]:
        """Run the block in one transaction; commit on success, roll back on any error."""
        if not self._lock.acquire(timeout=self.timeout_s):  # another thread's transaction stalls
            raise Unavailable("the database is busy")
        try:
            if self.dialect == "postgresql":
                with self._pg_transaction() as tx:
                    yield tx
            else:
                with self._sqlite_transaction() as tx:
                    yield tx
        finally:
            self._lock.release()

    @contextmanager
    def _sqlite_transaction(self) -> Iterator[Tx]:
        cur = self._conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            # Closed here, in the thread that ran it: a cursor left to the garbage collector is
            # reset wherever the collection runs - on the event loop, where that waited for
            # this connection's lock through another thread's busy wait (a 0.5 s stall).
            cur.close()
            raise Unavailable("the database is busy") from None
        try:
            yield Tx(cur, "sqlite")
            cur.execute("COMMIT")
        except sqlite3.IntegrityError as exc:
            cur.execute("ROLLBACK")
            raise ConstraintViolation() from exc
        except sqlite3.OperationalError as exc:
            cur.execute("ROLLBACK")
            if "locked" in str(exc) or "busy" in str(exc):
                raise Unavailable("the database is busy") from None
            raise
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        finally:
            cur.close()

    @contextmanager
    def _pg_transaction(self) -> Iterator[Tx]:
        pg = self._pg_errors
        if self._conn.closed:
            self._connect()
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                yield Tx(cur, "postgresql")
        except pg.IntegrityError as exc:
            raise ConstraintViolation() from exc
        except pg.OperationalError:
            log.warning("database connection failed", extra={"dialect": "postgresql"})
            raise Unavailable("the database is unreachable or timed out") from None

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _sqlite_path(url: str) -> str:
    if url in ("", ":memory:", "sqlite://", "sqlite:///:memory:"):
        return ":memory:"
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///") :]  # sqlite:///rel/path or sqlite:////abs/path
    if "://" in url:
        raise InvalidArgument("database URL must be sqlite:///PATH, a file path or postgresql://...")
    return url
