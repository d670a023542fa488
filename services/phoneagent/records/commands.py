"""``phone-agent calls list`` and ``phone-agent calls show ID``: read the record store
directly (``PA_RECORDS_DB``: a SQLite path or a postgresql:// URL)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

from phoneagent.records.store import DEFAULT_DB, RecordStore
from phoneagent.runtime.errors import PhoneAgentError


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S") if ns else "-"


def calls_list(args: argparse.Namespace) -> int:
    store = RecordStore(args.db)
    try:
        rows = store.list(limit=args.limit)
    finally:
        store.close()
    print(f"{'call id':<28} {'started (UTC)':<20} {'dir':<9} {'agent':<16} {'secs':>5}  outcome")
    for r in rows:
        secs = (
            f"{(r.ended_unix_ns - r.started_unix_ns) / 1e9:.0f}"
            if r.ended_unix_ns and r.started_unix_ns
            else "-"
        )
        print(
            f"{r.call_id:<28} {_when(r.started_unix_ns):<20} {r.direction:<9} {r.agent:<16} {secs:>5}  "
            f"{r.outcome or 'in progress'}"
        )
    return 0


def calls_show(args: argparse.Namespace) -> int:
    store = RecordStore(args.db)
    try:
        rec = store.get(args.call_id)
    finally:
        store.close()
    if rec is None:
        print(f"phone-agent calls show: no record for {args.call_id}", file=sys.stderr)
        return 1
    if args.json:
        body = rec.public_dict()
        print(json.dumps(body, indent=2, ensure_ascii=False))
        return 0
    print(
        f"call {rec.call_id}  {rec.direction}  agent={rec.agent}  from={rec.from_number}  to={rec.to_number}"
    )
    print(
        f"started {_when(rec.started_unix_ns)}  answered {_when(rec.answered_unix_ns)}  "
        f"ended {_when(rec.ended_unix_ns)}  reason={rec.end_reason or '-'}  outcome={rec.outcome or '-'}"
    )
    for t in rec.turns:
        lat = f" ({t.latency_ms} ms)" if t.latency_ms is not None else ""
        print(f"  [{t.turn_id}] {t.role:<6}{lat}: {t.text}")
    for tool in rec.tools:
        print(f"  tool {tool.get('name')} ok={tool.get('ok')} status={tool.get('status', '')}")
    for d in rec.decisions:
        print(f"  policy {d['subject']} {d['decision']} rule={d['rule']}")
    if rec.recording:
        print(f"  recording {rec.recording.get('uri')}")
    return 0


def _run(func):  # type: ignore[no-untyped-def]
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except PhoneAgentError as exc:
            print(f"phone-agent calls: {exc}", file=sys.stderr)
            return 1

    return wrapped


def add_calls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        default=os.environ.get("PA_RECORDS_DB", DEFAULT_DB),
        help="record store: SQLite path or postgresql:// URL (default $PA_RECORDS_DB)",
    )
    sub = p.add_subparsers(dest="calls_command", required=True)
    ls = sub.add_parser("list", help="most recent calls first")
    ls.add_argument("--limit", type=int, default=20)
    ls.set_defaults(func=_run(calls_list))
    show = sub.add_parser("show", help="one call's record: turns, tools, policy decisions")
    show.add_argument("call_id")
    show.add_argument("--json", action="store_true", help="print the whole record as JSON")
    show.set_defaults(func=_run(calls_show))
