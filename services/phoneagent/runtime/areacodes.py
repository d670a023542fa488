"""North American area code -> region and IANA time zone(s).

The table (``data/nanp_area_codes.csv``) lists every geographic area code of the North
American Numbering Plan we know of: the US states and territories, Canada and the
Caribbean members. An area code whose territory spans several time zones lists all of
them (for example 850, the Florida panhandle: Eastern and Central); callers must treat
such a number as being in every listed zone at once. Non-geographic codes (8XX toll
free, 900, 5XX personal communications) are deliberately absent: a number with no entry
has no known time zone and policy refuses to call it unless the campaign supplies one.

Regions are ISO 3166-2 style (``US-CA``, ``CA-ON``) or the ISO country code for
single-region members (``PR``, ``JM``); ``CA-NORTH`` is the shared 867 code of Yukon,
Northwest Territories and Nunavut. The table was compiled from the public NANPA
assignments (including overlays announced up to 2025); operators can point
:func:`load_area_codes` at an updated copy with the same three columns.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.numbers import nanp_area_code

log = logging.getLogger(__name__)

_DATA_FILE = "nanp_area_codes.csv"


@dataclass(frozen=True)
class AreaCode:
    code: str
    region: str
    time_zones: tuple[str, ...]


class AreaCodeTable:
    """An immutable map from three-digit area code to :class:`AreaCode`."""

    def __init__(self, entries: dict[str, AreaCode]) -> None:
        self._entries = dict(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, area_code: str) -> AreaCode | None:
        return self._entries.get(area_code)

    def for_number(self, e164: str) -> AreaCode | None:
        """Entry for a canonical +1 number; None for non-NANP numbers and unknown codes."""
        code = nanp_area_code(e164)
        return self._entries.get(code) if code else None


def load_area_codes(path: Path | None = None) -> AreaCodeTable:
    """Read the table from ``path`` (default: the packaged CSV). Every zone must exist in tzdata."""
    if path is None:
        text = resources.files("phoneagent.runtime").joinpath("data", _DATA_FILE).read_text("utf-8")
    else:
        text = Path(path).read_text("utf-8")
    entries: dict[str, AreaCode] = {}
    for line_no, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        entry = _parse_row(row, line_no)
        if entry.code in entries:
            raise InvalidArgument(f"area code table line {line_no}: duplicate area code {entry.code}")
        entries[entry.code] = entry
    log.info("area code table loaded", extra={"area_codes": len(entries)})
    return AreaCodeTable(entries)


def _parse_row(row: dict[str, str], line_no: int) -> AreaCode:
    code = (row.get("area_code") or "").strip()
    region = (row.get("region") or "").strip()
    zones = tuple((row.get("time_zones") or "").split())
    if len(code) != 3 or not code.isdigit() or not region or not zones:
        raise InvalidArgument(f"area code table line {line_no}: needs area_code, region and time_zones")
    for zone in zones:
        if not is_known_time_zone(zone):
            raise InvalidArgument(f"area code table line {line_no}: unknown time zone {zone!r}")
    return AreaCode(code=code, region=region, time_zones=zones)


@lru_cache(maxsize=1)
def default_table() -> AreaCodeTable:
    """The packaged table, loaded once."""
    return load_area_codes()


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """A cached ZoneInfo; raises InvalidArgument for names tzdata does not know."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidArgument(f"unknown time zone {name!r}") from exc


def is_known_time_zone(name: str) -> bool:
    if not name or not isinstance(name, str):
        return False
    try:
        zone(name)
    except InvalidArgument:
        return False
    return True


def time_zones_for(
    e164: str, explicit: str | None = None, table: AreaCodeTable | None = None
) -> tuple[str, ...]:
    """Zones a callee may be in: the explicit zone when given, else the area code's zones.

    Returns an empty tuple when nothing is known (non-NANP number without an explicit
    zone, unknown area code); an explicit zone that tzdata does not know raises.
    """
    if explicit:
        zone(explicit)
        return (explicit,)
    entry = (table or default_table()).for_number(e164)
    return entry.time_zones if entry else ()
