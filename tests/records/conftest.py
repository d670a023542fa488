"""Fixtures the records tests share: a fresh SQLite record store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from phoneagent.records.store import RecordStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    s = RecordStore(str(tmp_path / "records.sqlite3"))
    yield s
    s.close()
