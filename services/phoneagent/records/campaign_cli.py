"""``phone-agent campaign start``: run an outbound campaign from the command line.

It connects to the bus named by ``PA_NATS_URL`` (or ``--nats-url``), runs
:class:`~.campaign_runner.CampaignRunner` in this process (every dial approved by policy over
the bus) until every contact has a final outcome, then writes the results CSV.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from datetime import time as dtime
from datetime import timedelta
from pathlib import Path

from phoneagent.records.campaign import Contact, Outcome, PacingConfig, parse_campaign_csv
from phoneagent.records.campaign_runner import AmdMode, CampaignRunner, RunnerConfig
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.redact import mask_number
from phoneagent.runtime.settings import parse_hhmm


def _nats_url(args: argparse.Namespace) -> str:
    if args.nats_url:
        return str(args.nats_url)
    from phoneagent.runtime.settings import CommonSettings, load

    return load(CommonSettings).nats_url


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
    from phoneagent.records.settings import RecordsServiceSettings
    from phoneagent.runtime.settings import load

    settings = load(RecordsServiceSettings)
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
