"""The appointment book: free slots, booking, moving, cancelling, messages.

Times are stored in UTC; the business time zone is applied only at the edges (slot
generation from opening hours, and the aware datetimes handed back). Double booking is
refused by the database itself: an appointment owns one row per 5 minutes it covers in
``appointment_cells``, whose primary key admits one holder.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from phoneagent.agents.agent import Agent, AppointmentType
from phoneagent.llm.domain import migrations
from phoneagent.llm.domain.dates import NonexistentTime, to_aware
from phoneagent.llm.domain.verification import burn_one_check, hash_secret, new_reference, secret_matches
from phoneagent.runtime.db import DEFAULT_TIMEOUT_S, ConstraintViolation, Database, Tx
from phoneagent.runtime.errors import ErrorKind, InvalidArgument, PhoneAgentError
from phoneagent.runtime.redact import mask_number

log = logging.getLogger(__name__)
CELL = timedelta(minutes=5)
_UTC = UTC
_FMT = "%Y-%m-%dT%H:%M:%SZ"
_COLUMNS = "id, type_id, starts_at, ends_at, caller_name, phone, notes, status, call_id"


class SlotUnavailable(PhoneAgentError):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorKind.INVALID_ARGUMENT, message)


class AppointmentNotFound(PhoneAgentError):
    def __init__(self, message: str = "no such appointment") -> None:
        super().__init__(ErrorKind.NOT_FOUND, message)


@dataclass(frozen=True)
class Slot:
    type_id: str
    start: datetime  # aware, business time zone
    end: datetime


@dataclass(frozen=True)
class Appointment:
    id: str
    type_id: str
    start: datetime  # aware, business time zone
    end: datetime
    caller_name: str
    phone: str
    notes: str
    status: str  # "booked" or "cancelled"
    call_id: str
    # The booking reference, set only on the booking just made (the database keeps a hash);
    # out of repr and equality, so it is never logged and a booking read back equals it.
    reference: str = field(default="", repr=False, compare=False)


@dataclass(frozen=True)
class Message:
    id: str
    caller_name: str
    phone: str
    body: str
    urgent: bool
    created_at: datetime


def utc_text(moment: datetime) -> str:
    return moment.astimezone(_UTC).strftime(_FMT)


def _from_text(text: str) -> datetime:
    return datetime.strptime(text, _FMT).replace(tzinfo=_UTC)


def normalise_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone or "")
    if not 7 <= len(digits) <= 15:
        raise InvalidArgument("phone number must have 7 to 15 digits")
    return ("+" if phone.strip().startswith("+") else "") + digits


def _phone_key(phone: str) -> str:
    return re.sub(r"\D", "", phone)[-10:]


def _cells(start: datetime, end: datetime) -> list[str]:
    out, t = [], start.astimezone(_UTC)
    while t < end:
        out.append(t.strftime(_FMT))
        t += CELL
    return out


class SchedulingStore:
    """One agent's appointment book in a (possibly shared) database."""

    def __init__(self, db: Database, agent: Agent, clock: Callable[[], datetime] | None = None) -> None:
        self.db = db
        self.agent = agent
        self._clock = clock or (lambda: datetime.now(_UTC))

    @classmethod
    def open(
        cls,
        url: str,
        agent: Agent,
        clock: Callable[[], datetime] | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> SchedulingStore:
        """Bring the schema up to date (with the default patience: another replica may be
        migrating), then connect for the calls: no statement waits longer than ``timeout_s``."""
        if timeout_s < DEFAULT_TIMEOUT_S:
            setup = Database(url)
            try:
                migrations.migrate(setup)
            finally:
                setup.close()
            db = Database(url, timeout_s=timeout_s)
        else:
            db = Database(url, timeout_s=timeout_s)
        migrations.migrate(db)  # nothing left to do when done above
        return cls(db, agent, clock)

    def now(self) -> datetime:
        return self._clock()

    # --- availability ------------------------------------------------------------------------
    def appointment_type(self, type_id: str) -> AppointmentType:
        kind = self.agent.find_type(type_id)
        if kind is None:
            names = ", ".join(t.name for t in self.agent.appointment_types)
            raise InvalidArgument(f"unknown appointment type; offered: {names}")
        return kind

    def candidate_starts(self, kind: AppointmentType, day: date) -> list[datetime]:
        """Grid starts on ``day`` whose whole appointment fits in an opening interval."""
        tz, step, length = (
            self.agent.tz,
            timedelta(minutes=self.agent.slot_minutes),
            timedelta(minutes=kind.duration_minutes),
        )
        out: list[datetime] = []
        for interval in self.agent.hours_on(day):
            t = datetime.combine(day, interval.start)
            end = datetime.combine(day, interval.end)
            while t + length <= end:
                try:
                    out.append(to_aware(day, t.time(), tz))
                except NonexistentTime:
                    pass
                t += step
        return out

    def _bookable(self, start: datetime) -> bool:
        now = self.now()
        return start >= now + timedelta(minutes=self.agent.min_notice_minutes) and start <= now + timedelta(
            days=self.agent.booking_horizon_days
        )

    def free_slots(
        self, type_id: str, days: Iterable[date], window: tuple[time, time] | None = None, limit: int = 10
    ) -> list[Slot]:
        """Free slots for an appointment type on ``days``, optionally starting within ``window``."""
        kind = self.appointment_type(type_id)
        length = timedelta(minutes=kind.duration_minutes)
        candidates = [
            s
            for d in sorted(set(days))
            for s in self.candidate_starts(kind, d)
            if self._bookable(s) and (window is None or window[0] <= s.time() < window[1])
        ]
        if not candidates:
            return []
        taken = self._taken_cells(candidates[0], candidates[-1] + length)
        out: list[Slot] = []
        for start in candidates:
            if not any(c in taken for c in _cells(start, start + length)):
                out.append(Slot(kind.id, start, start + length))
                if len(out) >= limit:
                    break
        return out

    def _taken_cells(self, start: datetime, end: datetime) -> set[str]:
        with self.db.transaction() as tx:
            rows = tx.query(
                "SELECT cell_start FROM appointment_cells WHERE agent = ? AND cell_start >= ?"
                " AND cell_start < ?",
                (self.agent.name, utc_text(start), utc_text(end)),
            )
        return {r[0] for r in rows}

    def _check_start(self, kind: AppointmentType, start: datetime) -> datetime:
        if start.tzinfo is None:
            raise InvalidArgument("appointment start must be timezone-aware")
        local = start.astimezone(self.agent.tz)
        if local not in self.candidate_starts(kind, local.date()):
            raise SlotUnavailable("that time is outside opening hours or not on the appointment grid")
        if not self._bookable(local):
            raise SlotUnavailable("that time is too soon or too far ahead to book")
        return local

    # --- changes -----------------------------------------------------------------------------
    def book(
        self,
        type_id: str,
        start: datetime,
        caller_name: str,
        phone: str,
        notes: str = "",
        call_id: str = "",
        birth_date: date | None = None,
    ) -> Appointment:
        """Book a slot; the booking gets a fresh reference (returned, stored hashed) and keeps the
        caller's date of birth hashed when given."""
        kind = self.appointment_type(type_id)
        local = self._check_start(kind, start)
        number = normalise_phone(phone)
        if not caller_name.strip():
            raise InvalidArgument("caller name is required")
        appt = Appointment(
            uuid.uuid4().hex[:12],
            kind.id,
            local,
            local + timedelta(minutes=kind.duration_minutes),
            caller_name.strip(),
            number,
            notes.strip(),
            "booked",
            call_id,
            reference=new_reference(),
        )
        stamp = utc_text(self.now())
        try:
            with self.db.transaction() as tx:
                tx.execute(
                    f"INSERT INTO appointments ({_COLUMNS}, agent, phone_key, reference_hash,"
                    " birth_date_hash, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        appt.id,
                        appt.type_id,
                        utc_text(appt.start),
                        utc_text(appt.end),
                        appt.caller_name,
                        number,
                        appt.notes,
                        "booked",
                        call_id,
                        self.agent.name,
                        _phone_key(number),
                        hash_secret(appt.reference),
                        hash_secret(birth_date.isoformat()) if birth_date else "",
                        stamp,
                        stamp,
                    ),
                )
                self._hold_cells(tx, appt.id, appt.start, appt.end)
        except ConstraintViolation:
            raise SlotUnavailable("that time has just been taken") from None
        log.info(
            "appointment booked",
            extra={
                "agent": self.agent.name,
                "appointment": appt.id,
                "phone": mask_number(number),
                "call_id": call_id,
            },
        )
        return appt

    def _hold_cells(self, tx: Tx, appointment_id: str, start: datetime, end: datetime) -> None:
        tx.executemany(
            "INSERT INTO appointment_cells (agent, cell_start, appointment_id) VALUES (?, ?, ?)",
            [(self.agent.name, c, appointment_id) for c in _cells(start, end)],
        )

    def move(self, appointment_id: str, new_start: datetime, phone: str | None = None) -> Appointment:
        old = self._owned_upcoming(appointment_id, phone)
        kind = self.appointment_type(old.type_id)
        local = self._check_start(kind, new_start)
        end = local + timedelta(minutes=kind.duration_minutes)
        try:
            with self.db.transaction() as tx:
                tx.execute("DELETE FROM appointment_cells WHERE appointment_id = ?", (old.id,))
                self._hold_cells(tx, old.id, local, end)
                tx.execute(
                    "UPDATE appointments SET starts_at = ?, ends_at = ?, updated_at = ? WHERE id = ?",
                    (utc_text(local), utc_text(end), utc_text(self.now()), old.id),
                )
        except ConstraintViolation:
            raise SlotUnavailable("that time is already taken") from None
        log.info("appointment moved", extra={"agent": self.agent.name, "appointment": old.id})
        return self.get(old.id)

    def cancel(self, appointment_id: str, phone: str | None = None) -> Appointment:
        old = self._owned_upcoming(appointment_id, phone)
        with self.db.transaction() as tx:
            tx.execute("DELETE FROM appointment_cells WHERE appointment_id = ?", (old.id,))
            tx.execute(
                "UPDATE appointments SET status = 'cancelled', updated_at = ? WHERE id = ?",
                (utc_text(self.now()), old.id),
            )
        log.info("appointment cancelled", extra={"agent": self.agent.name, "appointment": old.id})
        return self.get(old.id)

    def _owned_upcoming(self, appointment_id: str, phone: str | None) -> Appointment:
        appt = self.get(appointment_id)
        if phone is not None and _phone_key(normalise_phone(phone)) != _phone_key(appt.phone):
            raise AppointmentNotFound()
        if appt.status != "booked" or appt.start <= self.now():
            raise AppointmentNotFound("that appointment is not an upcoming booking")
        return appt

    # --- queries -----------------------------------------------------------------------------
    def _row(self, row: tuple[object, ...]) -> Appointment:
        tz = self.agent.tz
        return Appointment(
            str(row[0]),
            str(row[1]),
            _from_text(str(row[2])).astimezone(tz),
            _from_text(str(row[3])).astimezone(tz),
            str(row[4]),
            str(row[5]),
            str(row[6]),
            str(row[7]),
            str(row[8]),
        )

    def get(self, appointment_id: str) -> Appointment:
        with self.db.transaction() as tx:
            rows = tx.query(
                f"SELECT {_COLUMNS} FROM appointments WHERE id = ? AND agent = ?",
                (appointment_id, self.agent.name),
            )
        if not rows:
            raise AppointmentNotFound()
        return self._row(rows[0])

    def find_by_phone(self, phone: str, upcoming_only: bool = True) -> list[Appointment]:
        since = utc_text(self.now()) if upcoming_only else "0000"
        with self.db.transaction() as tx:
            rows = tx.query(
                f"SELECT {_COLUMNS} FROM appointments WHERE agent = ? AND phone_key = ?"
                " AND status = 'booked' AND starts_at > ? ORDER BY starts_at",
                (self.agent.name, _phone_key(normalise_phone(phone)), since),
            )
        return [self._row(r) for r in rows]

    def match_reference(self, phone: str, reference: str) -> list[Appointment]:
        """The caller's upcoming bookings (by caller ID ``phone``) made with ``reference``; empty
        alike when there are none and when the reference is wrong, after the same work."""
        return self._matching(phone, "reference_hash", reference)

    def match_birth_date(self, phone: str, birth_date: date) -> list[Appointment]:
        """The caller's upcoming bookings made with this date of birth (as :meth:`match_reference`)."""
        return self._matching(phone, "birth_date_hash", birth_date.isoformat())

    def _matching(self, phone: str, column: str, secret: str) -> list[Appointment]:
        since = utc_text(self.now())
        with self.db.transaction() as tx:
            rows = tx.query(
                f"SELECT {_COLUMNS}, {column} FROM appointments WHERE agent = ? AND phone_key = ?"
                " AND status = 'booked' AND starts_at > ? ORDER BY starts_at",
                (self.agent.name, _phone_key(normalise_phone(phone)), since),
            )
        if not rows:
            burn_one_check()
        return [self._row(r[:-1]) for r in rows if secret_matches(secret, str(r[-1]))]

    def appointments_between(self, start: datetime, end: datetime) -> list[Appointment]:
        with self.db.transaction() as tx:
            rows = tx.query(
                f"SELECT {_COLUMNS} FROM appointments WHERE agent = ? AND status = 'booked'"
                " AND starts_at >= ? AND starts_at < ? ORDER BY starts_at",
                (self.agent.name, utc_text(start), utc_text(end)),
            )
        return [self._row(r) for r in rows]

    # --- messages ----------------------------------------------------------------------------
    def take_message(
        self, caller_name: str, phone: str, body: str, urgent: bool = False, call_id: str = ""
    ) -> Message:
        if not body.strip() or not caller_name.strip():
            raise InvalidArgument("a message needs a name and some text")
        msg = Message(
            uuid.uuid4().hex[:12],
            caller_name.strip(),
            normalise_phone(phone),
            body.strip(),
            urgent,
            self.now(),
        )
        with self.db.transaction() as tx:
            tx.execute(
                "INSERT INTO messages (id, agent, caller_name, phone, body, urgent, call_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    msg.id,
                    self.agent.name,
                    msg.caller_name,
                    msg.phone,
                    msg.body,
                    int(urgent),
                    call_id,
                    utc_text(msg.created_at),
                ),
            )
        log.info("message taken", extra={"agent": self.agent.name, "message_id": msg.id, "urgent": urgent})
        return msg

    def messages(self, limit: int = 50) -> list[Message]:
        with self.db.transaction() as tx:
            rows = tx.query(
                "SELECT id, caller_name, phone, body, urgent, created_at FROM messages"
                " WHERE agent = ? ORDER BY created_at DESC LIMIT ?",
                (self.agent.name, limit),
            )
        return [
            Message(str(r[0]), str(r[1]), str(r[2]), str(r[3]), bool(r[4]), _from_text(str(r[5])))
            for r in rows
        ]

    # --- retention ---------------------------------------------------------------------------
    def purge(self, appointment_days: float, message_days: float) -> tuple[int, int]:
        """Delete this agent's appointments that ended more than ``appointment_days`` ago (kept
        or cancelled, with their cells) and its messages older than ``message_days``; 0 keeps
        that kind forever. Returns (appointments, messages) deleted."""
        now = self.now()
        appointments = messages = 0
        with self.db.transaction() as tx:
            if appointment_days > 0:
                cutoff = utc_text(now - timedelta(days=appointment_days))
                old = [
                    str(r[0])
                    for r in tx.query(
                        "SELECT id FROM appointments WHERE agent = ? AND ends_at < ?",
                        (self.agent.name, cutoff),
                    )
                ]
                for appointment_id in old:
                    tx.execute("DELETE FROM appointment_cells WHERE appointment_id = ?", (appointment_id,))
                    tx.execute("DELETE FROM appointments WHERE id = ?", (appointment_id,))
                appointments = len(old)
            if message_days > 0:
                cutoff = utc_text(now - timedelta(days=message_days))
                messages = tx.execute(
                    "DELETE FROM messages WHERE agent = ? AND created_at < ?", (self.agent.name, cutoff)
                )
        if appointments or messages:
            log.info(
                "appointments and messages purged",
                extra={"agent": self.agent.name, "appointments": appointments, "messages": messages},
            )
        return appointments, messages
