"""``phone-agent dnc`` and ``phone-agent consent``: the operator's do-not-call lists and consent records.

Both work on the policy database (``PA_POLICY_DB``, or ``--db``); the running policy service
sees changes at its next decision (SQLite in WAL mode, one writer at a time).

* ``dnc import FILE --list NAME``: an imported list (national registry extract, client
  suppression list). Good rows are imported; every bad row is printed with its CSV row number
  and the exit status is 1, so a script notices. Importing the same file again is harmless
  (numbers already on the list are counted as duplicates).
* ``dnc add/remove/list``: the internal list (where opt-outs said on calls land too).
* ``consent add`` / ``consent import FILE``: prior express consent (number, purpose, source,
  date, optional expiry). An import is all or nothing: one bad row and no row is stored, every
  bad row is printed, exit status 1; fix the file and run it again (no duplicates to clean up).
* ``consent revoke NUMBER [--purpose P]`` and ``consent list NUMBER``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from phoneagent.policy.stores import PolicyStores
from phoneagent.runtime.csvrows import RowError, cell, header_index, numbered, read_rows
from phoneagent.runtime.errors import InvalidArgument, PhoneAgentError

# A consent date may lie a little ahead of this clock (time zones), not days ahead.
MAX_FUTURE = timedelta(days=1)
CONSENT_COLUMNS = ("number", "purpose", "source", "date", "expires")


def _stores(args: argparse.Namespace) -> PolicyStores:
    path = args.db
    if not path:
        from phoneagent.policy.settings import PolicySettings
        from phoneagent.runtime.settings import load

        path = load(PolicySettings).db_path
    return PolicyStores(path if "://" in path else Path(path).expanduser())


def parse_when(text: str, what: str, now: datetime | None = None) -> datetime:
    """``2026-05-01`` (midnight UTC) or an ISO 8601 time (UTC when it names no zone)."""
    value = text.strip()
    try:
        if len(value) == 10:
            when = datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        else:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"{what} {value[:40]!r} is not a date (2026-05-01 or 2026-05-01T09:00Z)"
        ) from None
    when = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    if what == "date" and when > (now or datetime.now(UTC)) + MAX_FUTURE:
        raise InvalidArgument(f"date {value[:40]!r} is in the future")
    return when


def _run(name: str, args: argparse.Namespace) -> int:
    try:
        with _stores(args) as stores:
            return int(args.action(stores, args))
    except PhoneAgentError as exc:
        print(f"phone-agent {name}: {exc.message}", file=sys.stderr)
        return 2


def _common(p: argparse.ArgumentParser, leaves: tuple[argparse.ArgumentParser, ...], name: str) -> None:
    for leaf in leaves:
        leaf.add_argument("--db", default="", help="policy database (default PA_POLICY_DB)")
    p.set_defaults(func=lambda args: _run(name, args))


def _print_errors(errors: list[RowError]) -> None:
    for err in errors:
        print(f"row {err.row}: {err.reason}", file=sys.stderr)


# --- dnc ------------------------------------------------------------------------------------


def add_dnc_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dnc_command", required=True)
    i = sub.add_parser("import", help="import a do-not-call list from a CSV (number column or first column)")
    i.add_argument("file", type=Path)
    i.add_argument("--list", required=True, dest="list_name", help="list name, e.g. national-2026-05")
    i.add_argument("--replace", action="store_true", help="drop the list's previous numbers first")
    i.set_defaults(action=_dnc_import)
    a = sub.add_parser("add", help="add a number to the internal do-not-call list")
    a.add_argument("number")
    a.add_argument("--source", default="operator", help="why (kept with the entry)")
    a.set_defaults(action=_dnc_add)
    r = sub.add_parser("remove", help="remove a number from the internal do-not-call list")
    r.add_argument("number")
    r.set_defaults(action=_dnc_remove)
    ls = sub.add_parser("list", help="the internal list, and each imported list with its size")
    ls.set_defaults(action=_dnc_list)
    _common(p, (i, a, r, ls), "dnc")


def _dnc_import(stores: PolicyStores, args: argparse.Namespace) -> int:
    report = stores.imported_dnc.import_csv(
        args.list_name, Path(args.file), datetime.now(UTC), replace=args.replace
    )
    _print_errors(report.errors)
    print(
        f"list {args.list_name}: {report.imported} imported, {report.duplicates} duplicate(s), "
        f"{report.rejected} bad row(s) not imported",
        file=sys.stderr,
    )
    return 1 if report.errors else 0


def _dnc_add(stores: PolicyStores, args: argparse.Namespace) -> int:
    number = stores.dnc.add(args.number, args.source, datetime.now(UTC))
    print(f"{number} is on the internal do-not-call list")
    return 0


def _dnc_remove(stores: PolicyStores, args: argparse.Namespace) -> int:
    if not stores.dnc.remove(args.number):
        print("phone-agent dnc: that number is not on the internal list", file=sys.stderr)
        return 1
    print("removed from the internal do-not-call list")
    return 0


def _dnc_list(stores: PolicyStores, args: argparse.Namespace) -> int:
    entries = stores.dnc.entries()
    for e in entries:
        print(f"{e.number}\t{e.added_at.isoformat(timespec='seconds')}\t{e.source}")
    print(f"internal: {len(entries)} number(s)", file=sys.stderr)
    for name, count in stores.imported_dnc.lists():
        print(f"imported list {name}: {count} number(s)", file=sys.stderr)
    return 0


# --- consent --------------------------------------------------------------------------------


def add_consent_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="consent_command", required=True)
    a = sub.add_parser("add", help="record one consent")
    a.add_argument("number")
    a.add_argument("--purpose", required=True, help="campaign purpose it covers, e.g. appointment-reminders")
    a.add_argument("--source", required=True, help="where it was given: web form, paper form, call ...")
    a.add_argument("--date", required=True, help="when it was given: 2026-05-01 or an ISO time")
    a.add_argument("--expires", default="", help="when it lapses (optional)")
    a.set_defaults(action=_consent_add)
    i = sub.add_parser(
        "import", help=f"record consents from a CSV ({', '.join(CONSENT_COLUMNS)}): all or none"
    )
    i.add_argument("file", type=Path)
    i.add_argument("--purpose", default="", help="for rows without a purpose column")
    i.add_argument("--source", default="", help="for rows without a source column")
    i.set_defaults(action=_consent_import)
    r = sub.add_parser("revoke", help="revoke a number's consent (one purpose, or all)")
    r.add_argument("number")
    r.add_argument("--purpose", default=None)
    r.set_defaults(action=_consent_revoke)
    ls = sub.add_parser("list", help="a number's consent records and their status now")
    ls.add_argument("number")
    ls.set_defaults(action=_consent_list)
    _common(p, (a, i, r, ls), "consent")


def _consent_add(stores: PolicyStores, args: argparse.Namespace) -> int:
    granted = parse_when(args.date, "date")
    expires = parse_when(args.expires, "expires") if args.expires else None
    stores.consent.grant(args.number, args.purpose, args.source, granted, expires)
    print(f"consent recorded for {args.purpose}")
    return 0


def _consent_import(stores: PolicyStores, args: argparse.Namespace) -> int:
    rows = read_rows(Path(args.file))
    if not rows:
        raise InvalidArgument("the CSV file is empty")
    cols = header_index(rows[0])
    if "number" not in cols:
        raise InvalidArgument(f"the CSV needs a header row with columns {', '.join(CONSENT_COLUMNS)}")
    for name, default in (("purpose", args.purpose), ("source", args.source)):
        if name not in cols and not default:
            raise InvalidArgument(f"the CSV has no {name} column: give --{name}")
    if "date" not in cols:
        raise InvalidArgument("the CSV has no date column (when the consent was given)")
    good, errors = [], []
    now = datetime.now(UTC)
    for row_no, row in numbered(rows[1:], 2):

        def col(name: str, default: str = "", r: list[str] = row) -> str:
            return cell(r, cols[name]) if name in cols else default

        try:
            expires = col("expires")
            good.append(
                stores.consent.check(
                    col("number"),
                    col("purpose") or args.purpose,
                    col("source") or args.source,
                    parse_when(col("date"), "date", now),
                    parse_when(expires, "expires") if expires else None,
                )
            )
        except InvalidArgument as exc:
            errors.append(RowError(row=row_no, reason=exc.message))
    _print_errors(errors)
    if errors:
        print(f"{len(errors)} bad row(s): nothing imported; fix them and run again", file=sys.stderr)
        return 1
    stores.consent.grant_all(good)
    print(f"{len(good)} consent record(s) imported", file=sys.stderr)
    return 0


def _consent_revoke(stores: PolicyStores, args: argparse.Namespace) -> int:
    count = stores.consent.revoke(args.number, args.purpose, datetime.now(UTC))
    print(f"{count} consent record(s) revoked")
    return 0 if count else 1


def _consent_list(stores: PolicyStores, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    records = stores.consent.all_records(args.number)
    for r in records:
        expires = r.expires_at.date().isoformat() if r.expires_at else "-"
        print(f"{r.purpose}\t{r.status_at(now)}\t{r.granted_at.date().isoformat()}\t{expires}\t{r.source}")
    print(f"{len(records)} consent record(s)", file=sys.stderr)
    return 0
