"""``phone-agent audit`` and ``phone-agent campaign start``: command-line front ends.

Both connect to the bus named by ``PA_NATS_URL`` (or ``--nats-url``). ``audit`` reads the
``PA_AUDIT`` stream; ``campaign start`` runs :class:`~.campaign_runner.CampaignRunner` in this
process until every contact has a final outcome, then writes the results CSV.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Callable
from datetime import time as dtime
from datetime import timedelta
from pathlib import Path

from phoneagent.policy.audit_query import AuditFilter, format_record, parse_decision, parse_since, query_audit
from phoneagent.policy.campaign import Contact, Outcome, PacingConfig, parse_campaign_csv
from phoneagent.policy.campaign_runner import AmdMode, CampaignRunner, RunnerConfig
from phoneagent.policy.outbound import parse_hhmm
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.redact import mask_number

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


def add_campaign_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="campaign_command", required=True)
    s = sub.add_parser("start", help="dial every number of a contact CSV, then write the results")
    s.add_argument("file", type=Path, help="CSV with a number column; name, time_zone, purpose optional")
    s.add_argument("--purpose", required=True, help="campaign purpose (consent is checked against it)")
    s.add_argument("--campaign-id", default="", help="default: a new random id")
    s.add_argument("--max-concurrent", type=int, default=2)
    s.add_argument("--per-minute", type=int, default=10)
    s.add_argument("--max-attempts", type=int, default=3)
    s.add_argument(
        "--retry-after-s", type=float, default=300.0, help="first retry back-off, doubled each time"
    )
    s.add_argument(
        "--amd",
        default="hangup",
        choices=[m.value for m in AmdMode],
        help="what to do when an answering machine picks up",
    )
    s.add_argument(
        "--voicemail-message", default="", help="what to say to an answering machine (--amd leave-message)"
    )
    s.add_argument("--agent", default="", help="agent name for the calls (default: the edge's)")
    s.add_argument("--call-timeout-s", type=float, default=3700.0)
    s.add_argument("--out", type=Path, default=None, help="results CSV (default: standard output)")
    s.add_argument("--nats-url", default="", help="default PA_NATS_URL")
    s.set_defaults(func=campaign_command)


def campaign_command(args: argparse.Namespace) -> int:
    try:
        imported = parse_campaign_csv(args.file, default_purpose=args.purpose)
        for err in imported.errors:
            print(f"row {err.row}: {err.reason}", file=sys.stderr)
        window = _policy_window()
        config = RunnerConfig(
            campaign_id=args.campaign_id or f"camp-{uuid.uuid4().hex[:12]}",
            purpose=args.purpose,
            pacing=PacingConfig(
                max_concurrent=args.max_concurrent,
                calls_per_minute=args.per_minute,
                max_attempts=args.max_attempts,
                retry_base=timedelta(seconds=args.retry_after_s),
                retry_max=max(timedelta(hours=4), timedelta(seconds=args.retry_after_s)),
            ),
            amd=AmdMode(args.amd),
            voicemail_message=args.voicemail_message,
            agent=args.agent,
            call_timeout_s=args.call_timeout_s,
            window_start=window[0],
            window_end=window[1],
        )
        print(f"campaign {config.campaign_id}: {len(imported.contacts)} contact(s)", file=sys.stderr)
        return asyncio.run(_campaign(_nats_url(args), imported.contacts, config, args.out))
    except PhoneAgentError as exc:
        print(f"phone-agent campaign: {exc.message}", file=sys.stderr)
        return 2


def _policy_window() -> tuple[dtime, dtime]:
    """The calling window the policy service applies (PA_CALL_WINDOW_START / _END)."""
    from phoneagent.policy.settings import PolicySettings
    from phoneagent.runtime.settings import load

    settings = load(PolicySettings)
    return (
        parse_hhmm(settings.window_start, "PA_CALL_WINDOW_START"),
        parse_hhmm(settings.window_end, "PA_CALL_WINDOW_END"),
    )


def _progress(contact: Contact, outcome: Outcome, reason: str) -> None:
    print(f"{mask_number(contact.number)}  {outcome.value}  {reason}", file=sys.stderr, flush=True)


async def _campaign(url: str, contacts: list[Contact], config: RunnerConfig, out: Path | None) -> int:
    bus = Bus("campaign-cli")
    await bus.connect(url)
    try:
        runner = CampaignRunner(bus, contacts, config, progress=_progress)
        await runner.run()
    finally:
        await bus.close()
    if out is None:
        runner.pacer.export_csv(sys.stdout)
    else:
        with out.open("w", encoding="utf-8", newline="") as fh:
            runner.pacer.export_csv(fh)
        print(f"results written to {out}", file=sys.stderr)
    return 0
