"""Numbered schema steps for the scheduling database, applied in order and recorded in
``schema_version``. Each step is a module ``vNNNN_name.py`` with ``VERSION``,
``DESCRIPTION`` and ``STATEMENTS`` (portable SQL). Applying is idempotent and safe when
several replicas start at once: each step runs in one transaction, under a PostgreSQL
advisory lock or SQLite's write lock, and is skipped when already recorded.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from dataclasses import dataclass
from datetime import UTC, datetime

from phoneagent.runtime.db import Database, Tx

log = logging.getLogger(__name__)
_LOCK_ID = 74210651  # arbitrary constant: the advisory lock taken while migrating


@dataclass(frozen=True)
class Step:
    version: int
    description: str
    statements: tuple[str, ...]


def steps() -> list[Step]:
    found: list[Step] = []
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("v"):
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        found.append(Step(mod.VERSION, mod.DESCRIPTION, tuple(mod.STATEMENTS)))
    found.sort(key=lambda s: s.version)
    versions = [s.version for s in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration versions must be 1..N without gaps, found {versions}")
    return found


def current_version(db: Database) -> int:
    with db.transaction() as tx:
        _ensure_table(tx)
        rows = tx.query("SELECT MAX(version) FROM schema_version")
    return int(rows[0][0] or 0)


def _ensure_table(tx: Tx) -> None:
    if tx.dialect == "postgresql":  # concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL
        tx.query("SELECT pg_advisory_xact_lock(?)", (_LOCK_ID,))
    tx.execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
        " applied_at TEXT NOT NULL)"
    )


def migrate(db: Database) -> int:
    """Apply every pending step; returns the schema version now in force."""
    with db.transaction() as tx:
        _ensure_table(tx)
    version = 0
    for step in steps():
        with db.transaction() as tx:
            _ensure_table(tx)
            if tx.query("SELECT 1 FROM schema_version WHERE version = ?", (step.version,)):
                version = step.version
                continue
            for sql in step.statements:
                tx.execute(sql)
            applied = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            tx.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (step.version, step.description, applied),
            )
            log.info("schema step applied", extra={"version": step.version, "dialect": tx.dialect})
            version = step.version
    return version
