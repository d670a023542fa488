"""Outbound campaigns, pure logic: the contact CSV, a pacer that picks the next number, results.

The pacer never dials and never sleeps; it is driven by an injected clock so it is
deterministic. A service loop uses it like this::

    contact = pacer.next_contact()           # None: nothing may start now (see next_wake())
    decision = evaluate_dial(...)            # policy, per attempt
    if not decision.allowed:
        pacer.report(contact.number, Outcome.DENIED, decision.reason)   # or pacer.defer(...)
    else:
        ... dial, record the attempt ...
        pacer.report(contact.number, Outcome.BUSY)   # completed / voicemail / no_answer / busy / failed

Busy and no-answer are retried with exponential back-off (base, 2x base, 4x base ...,
capped) until ``max_attempts``; every other outcome is final.
"""

from __future__ import annotations

import csv
import enum
import heapq
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TextIO

from phoneagent.runtime.areacodes import is_known_time_zone, zone
from phoneagent.runtime.csvrows import (
    CsvSource,
    RowError,
    cell,
    find_number_column,
    header_index,
    numbered,
    read_rows,
)
from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.numbers import NANP_COUNTRY_CODE, normalize_e164

_STANDARD_COLUMNS = {"name", "time_zone", "timezone", "tz", "purpose"}


class Outcome(enum.StrEnum):
    COMPLETED = "completed"
    VOICEMAIL = "voicemail"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    DENIED = "denied"


@dataclass(frozen=True)
class Contact:
    number: str  # E.164
    name: str = ""
    time_zone: str | None = None
    purpose: str = ""
    fields: dict[str, str] = field(default_factory=dict)
    row: int = 0


@dataclass
class CampaignImport:
    contacts: list[Contact]
    errors: list[RowError]


def parse_campaign_csv(
    source: CsvSource, default_purpose: str | None = None, default_country: str = NANP_COUNTRY_CODE
) -> CampaignImport:
    """Read a campaign CSV with a header row: ``number`` (or ``phone``) is required; ``name``,
    ``time_zone`` and ``purpose`` are optional; other columns become custom fields. Bad rows
    are reported (row number and reason) and skipped; good rows are kept."""
    rows = read_rows(source)
    if not rows:
        raise InvalidArgument("campaign CSV is empty")
    header = rows[0]
    number_col = find_number_column(header)
    if number_col is None:
        raise InvalidArgument("campaign CSV needs a header with a 'number' column")
    cols = header_index(header)
    tz_col = next((cols[c] for c in ("time_zone", "timezone", "tz") if c in cols), None)
    extra = {name: i for name, i in cols.items() if name not in _STANDARD_COLUMNS and i != number_col}
    contacts: list[Contact] = []
    errors: list[RowError] = []
    first_row_of: dict[str, int] = {}
    for row_no, row in numbered(rows[1:], 2):
        try:
            contact = _contact(row, row_no, number_col, tz_col, cols, extra, default_purpose, default_country)
        except InvalidArgument as exc:
            errors.append(RowError(row=row_no, reason=exc.message))
            continue
        if contact.number in first_row_of:
            errors.append(RowError(row=row_no, reason=f"duplicate of row {first_row_of[contact.number]}"))
            continue
        first_row_of[contact.number] = row_no
        contacts.append(contact)
    return CampaignImport(contacts=contacts, errors=errors)


def _contact(
    row: list[str],
    row_no: int,
    number_col: int,
    tz_col: int | None,
    cols: dict[str, int],
    extra: dict[str, int],
    default_purpose: str | None,
    cc: str,
) -> Contact:
    number = cell(row, number_col)
    if not number:
        raise InvalidArgument("number is missing")
    e164 = normalize_e164(number, cc)
    tz = cell(row, tz_col) if tz_col is not None else ""
    if tz and not is_known_time_zone(tz):
        raise InvalidArgument(f"unknown time zone {tz[:40]!r}")
    purpose = cell(row, cols["purpose"]) if "purpose" in cols else ""
    purpose = purpose or (default_purpose or "")
    if not purpose:
        raise InvalidArgument("purpose is missing")
    name = cell(row, cols["name"]) if "name" in cols else ""
    fields = {key: cell(row, i) for key, i in extra.items()}
    return Contact(number=e164, name=name, time_zone=tz or None, purpose=purpose, fields=fields, row=row_no)


@dataclass(frozen=True)
class PacingConfig:
    max_concurrent: int = 2
    calls_per_minute: int = 10
    max_attempts: int = 3
    retry_base: timedelta = timedelta(minutes=5)
    retry_max: timedelta = timedelta(hours=4)
    retry_outcomes: frozenset[Outcome] = frozenset({Outcome.BUSY, Outcome.NO_ANSWER})

    def __post_init__(self) -> None:
        if self.max_concurrent < 1 or self.calls_per_minute < 1 or self.max_attempts < 1:
            raise InvalidArgument("max_concurrent, calls_per_minute and max_attempts must be at least 1")
        if self.retry_base <= timedelta(0) or self.retry_max < self.retry_base:
            raise InvalidArgument("retry_base must be positive and retry_max at least retry_base")
        if Outcome.DENIED in self.retry_outcomes:
            raise InvalidArgument("denied contacts are not retried; use CampaignPacer.defer")

    def backoff(self, attempts: int) -> timedelta:
        """Wait after the ``attempts``-th failed attempt: base * 2**(attempts-1), capped."""
        factor: int = 2 ** min(max(attempts - 1, 0), 30)
        wait: timedelta = min(self.retry_base * factor, self.retry_max)
        return wait


class _State(enum.StrEnum):
    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    RETRY_SCHEDULED = "retry_scheduled"
    DEFERRED = "deferred"  # waiting for the callee's calling window to open
    DONE = "done"


@dataclass
class ContactResult:
    contact: Contact
    state: str = _State.PENDING
    attempts: int = 0
    outcome: Outcome | None = None
    reason: str = ""
    last_attempt_at: datetime | None = None
    due_at: datetime | None = None
    started_at: datetime | None = None


def next_window_open(
    now: datetime, zones: Iterable[str], start: time, end: time, horizon_days: int = 3
) -> datetime | None:
    """The earliest moment at or after ``now`` (timezone-aware) when the local time in every one of
    ``zones`` is inside ``[start, end)``; None when there is none within ``horizon_days``."""
    names = tuple(zones)
    if not names:
        return None

    def inside(t: datetime) -> bool:
        return all(start <= t.astimezone(zone(n)).time().replace(tzinfo=None) < end for n in names)

    if inside(now):
        return now
    candidates = []
    for name in names:
        local_day = now.astimezone(zone(name)).date()
        for day in range(horizon_days + 1):
            opening = datetime.combine(local_day + timedelta(days=day), start, tzinfo=zone(name))
            if opening > now:
                candidates.append(opening.astimezone(now.tzinfo))
    return next((c for c in sorted(candidates) if inside(c)), None)


RESULT_COLUMNS = ("number", "name", "purpose", "status", "attempts", "reason", "last_attempt_at")


class CampaignPacer:
    """Decides which contact to dial next under concurrency, rate and retry rules."""

    def __init__(
        self,
        contacts: Iterable[Contact],
        config: PacingConfig | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config or PacingConfig()
        if clock is None:
            raise InvalidArgument("the pacer needs a clock returning timezone-aware datetimes")
        self._clock = clock
        self._results: dict[str, ContactResult] = {}
        self._order: list[str] = []
        self._due: list[tuple[datetime, int, str]] = []
        self._started: deque[datetime] = deque()
        self._in_progress = 0
        self._seq = 0
        now = self._now()
        for contact in contacts:
            if contact.number in self._results:
                raise InvalidArgument("a campaign cannot list the same number twice")
            self._results[contact.number] = ContactResult(contact=contact, due_at=now)
            self._order.append(contact.number)
            self._push(now, contact.number)

    def _now(self) -> datetime:
        now = self._clock()
        if now.utcoffset() is None:
            raise InvalidArgument("the pacer clock must return timezone-aware datetimes")
        return now

    def _push(self, due: datetime, number: str) -> None:
        heapq.heappush(self._due, (due, self._seq, number))
        self._seq += 1

    @property
    def in_progress(self) -> int:
        return self._in_progress

    @property
    def finished(self) -> bool:
        return all(r.state == _State.DONE for r in self._results.values())

    def _expire_rate_window(self, now: datetime) -> None:
        while self._started and self._started[0] <= now - timedelta(minutes=1):
            self._started.popleft()

    def next_contact(self) -> Contact | None:
        """Claim the next contact to dial now, or None (slots full, rate limit, nothing due)."""
        now = self._now()
        self._expire_rate_window(now)
        if self._in_progress >= self.config.max_concurrent:
            return None
        if len(self._started) >= self.config.calls_per_minute:
            return None
        if not self._due or self._due[0][0] > now:
            return None
        _, _, number = heapq.heappop(self._due)
        result = self._results[number]
        result.state, result.started_at, result.due_at = _State.IN_PROGRESS, now, None
        result.attempts += 1
        self._started.append(now)
        self._in_progress += 1
        return result.contact

    def next_wake(self) -> datetime | None:
        """When next_contact() may next return a contact if nothing is reported meanwhile; None when
        only a report can unblock it (all slots busy, or nothing left to schedule)."""
        if self._in_progress >= self.config.max_concurrent or not self._due:
            return None
        wake = self._due[0][0]
        if len(self._started) >= self.config.calls_per_minute:
            wake = max(wake, self._started[0] + timedelta(minutes=1))
        return wake

    def _claimed(self, number: str) -> ContactResult:
        result = self._results.get(number)
        if result is None or result.state != _State.IN_PROGRESS:
            raise InvalidArgument("no call in progress for that contact")
        self._in_progress -= 1
        return result

    def report(self, number: str, outcome: Outcome, reason: str = "") -> None:
        """The end of an attempt claimed by next_contact(). A denial is final and is not counted as an
        attempt or against the rate limit (nothing was dialled)."""
        result = self._claimed(number)
        outcome = Outcome(outcome)
        if outcome is Outcome.DENIED:
            self._unclaim(result)
        else:
            result.last_attempt_at = result.started_at
        retry = outcome in self.config.retry_outcomes and result.attempts < self.config.max_attempts
        if retry:
            result.state = _State.RETRY_SCHEDULED
            result.due_at = self._now() + self.config.backoff(result.attempts)
            self._push(result.due_at, number)
        else:
            result.state = _State.DONE
            if outcome in self.config.retry_outcomes:
                reason = reason or "max attempts reached"
        result.outcome, result.reason = outcome, reason

    def defer(self, number: str, until: datetime, reason: str = "") -> None:
        """Put a claimed contact back without counting an attempt (e.g. outside its calling window)."""
        result = self._claimed(number)
        self._unclaim(result)
        result.state, result.due_at, result.reason = _State.DEFERRED, until, reason
        self._push(until, number)

    def _unclaim(self, result: ContactResult) -> None:
        result.attempts -= 1
        if result.started_at is not None and result.started_at in self._started:
            self._started.remove(result.started_at)

    def results(self) -> list[ContactResult]:
        return [self._results[n] for n in self._order]

    def export_csv(self, out: TextIO) -> int:
        """Write one row per contact (final outcome, or its current status); returns rows written."""
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(RESULT_COLUMNS)
        for r in self.results():
            status = r.outcome.value if r.state == _State.DONE and r.outcome else str(r.state)
            when = r.last_attempt_at.isoformat() if r.last_attempt_at else ""
            writer.writerow(
                [r.contact.number, r.contact.name, r.contact.purpose, status, r.attempts, r.reason, when]
            )
        return len(self._results)
