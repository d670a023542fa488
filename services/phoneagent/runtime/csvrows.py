"""Shared pieces of the policy CSV imports: opening a source, finding columns, row errors."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from phoneagent.runtime.errors import InvalidArgument

CsvSource = str | Path | TextIO

NUMBER_HEADERS = ("number", "phone", "phone_number", "phonenumber", "telephone", "tel", "msisdn")


@dataclass(frozen=True)
class RowError:
    """A rejected CSV row: 1-based row number in the file (the header is row 1) and why."""

    row: int
    reason: str


@dataclass
class ImportReport:
    imported: int = 0
    duplicates: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.errors)


def read_rows(source: CsvSource) -> list[list[str]]:
    """All rows of a CSV given as a path, an open text file or a text string (contains a newline)."""
    try:
        if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source):
            with open(source, encoding="utf-8-sig", newline="") as f:
                return _parse(f)
        if isinstance(source, str):
            return _parse(io.StringIO(source))
        return _parse(source)
    except OSError as exc:
        raise InvalidArgument("CSV file cannot be read") from exc
    except UnicodeDecodeError as exc:
        raise InvalidArgument("CSV file is not UTF-8 text") from exc
    except csv.Error as exc:
        raise InvalidArgument(f"CSV file is malformed: {exc}") from exc


def _parse(f: TextIO) -> list[list[str]]:
    return [row for row in csv.reader(f)]


def header_index(header: list[str]) -> dict[str, int]:
    """Lower-cased, stripped column names -> position (first occurrence wins)."""
    out: dict[str, int] = {}
    for i, name in enumerate(header):
        key = name.strip().lower().replace(" ", "_")
        if key and key not in out:
            out[key] = i
    return out


def find_number_column(header: list[str]) -> int | None:
    cols = header_index(header)
    for name in NUMBER_HEADERS:
        if name in cols:
            return cols[name]
    return None


def numbered(rows: list[list[str]], first_row: int) -> Iterator[tuple[int, list[str]]]:
    """Rows with their 1-based file row number, skipping blank lines."""
    for offset, row in enumerate(rows):
        if any(cell.strip() for cell in row):
            yield first_row + offset, row


def cell(row: list[str], index: int) -> str:
    return row[index].strip() if index < len(row) else ""
