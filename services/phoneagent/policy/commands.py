"""``phone-agent audit``: print policy decisions from the ``PA_AUDIT`` stream.

It connects to the bus named by ``PA_NATS_URL`` (or ``--nats-url``).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable

from phoneagent.runtime.audit_query import (
    AuditFilter,
    format_record,
    parse_decision,
    parse_since,
    query_audit,
)
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import PhoneAgentError

Handler = Callable[[argparse.Namespace], int]


def _nats_url(args: argparse.Namespace) -> str:
    if args.nats_url:
        return str(args.nats_url)
    from phoneagent.runtime.settings import CommonSettings, load

    return load(CommonSettings).nats_url


def add_audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--call", default="", help="only decisions about this call id")
    p.add_argument("--since", default="", help="30m, 2h, 7d or an ISO time (default: everything kept)")
    p.add_argument("--decision", default="", choices=["", "allow", "deny"], help="only allow or deny")
    p.add_argument("--subject", default="", help="dial, disclosure, recording, escalation, opt_out")
    p.add_argument("--campaign", default="", help="only decisions of this campaign id")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--nats-url", default="", help="default PA_NATS_URL")
    p.set_defaults(func=audit_command)


def audit_command(args: argparse.Namespace) -> int:
    try:
        flt = AuditFilter(
            call_id=args.call,
            since=parse_since(args.since) if args.since else None,
            decision=parse_decision(args.decision),
            subject=args.subject,
            campaign_id=args.campaign,
            limit=max(1, args.limit),
        )
        return asyncio.run(_audit(_nats_url(args), flt))
    except PhoneAgentError as exc:
        print(f"phone-agent audit: {exc.message}", file=sys.stderr)
        return 2


async def _audit(url: str, flt: AuditFilter) -> int:
    bus = Bus("audit-cli")
    await bus.connect(url)
    try:
        records = await query_audit(bus.jetstream(), flt)
    finally:
        await bus.close()
    for record in records:
        print(format_record(record))
    print(f"{len(records)} decision(s)", file=sys.stderr)
    return 0
