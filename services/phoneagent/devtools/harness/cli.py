"""The ``call``, ``demo`` and ``bench`` subcommands (argument parsing and printing only)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable
from pathlib import Path

from phoneagent.runtime.errors import PhoneAgentError

DEFAULT_TARGET = "sip:agent@127.0.0.1:5060"


def add_call_args(p: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
    p.add_argument("--target", default=DEFAULT_TARGET, help=f"SIP URI to dial (default {DEFAULT_TARGET})")
    p.add_argument("--scenario", default="hours", help="built-in scenario name or a YAML file")
    p.add_argument("--wav", default="", help="write the stereo recording here (left caller, right agent)")
    p.add_argument("--nats-url", default="", help="bus for transfer/end checks (default PA_NATS_URL)")
    p.add_argument("--jitter-ms", type=float, default=0.0)
    p.add_argument("--loss", type=float, default=0.0, help="packet loss, percent")
    p.add_argument("--snr", type=float, default=None, help="background noise SNR in dB")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--greets-first", action="store_true", help="the caller speaks first")
    p.set_defaults(func=func)


def add_demo_args(p: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
    p.add_argument("--data-dir", default="var/demo")
    p.add_argument("--scenario", default="hours")
    p.add_argument("--ready-timeout", type=float, default=300.0)
    p.set_defaults(func=func)


def add_bench_args(p: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
    p.add_argument("--target", default=DEFAULT_TARGET)
    p.add_argument("--nats-url", default="", help="the stack's bus (default PA_NATS_URL)")
    p.add_argument("--calls", default="1,2,4,8", help="concurrency levels, comma-separated")
    p.add_argument("--turns", type=int, default=5, help="caller questions per call (5 asks each once)")
    p.add_argument("--json", default="", help="write the results here")
    p.set_defaults(func=func)


def call(args: argparse.Namespace) -> int:
    from phoneagent.devtools.harness.impair import Impairments
    from phoneagent.devtools.harness.scenario import load_scenario
    from phoneagent.devtools.harness.session import run_scenario

    try:
        scenario = load_scenario(args.scenario)
        imp = Impairments(args.jitter_ms, args.loss, args.snr, args.seed, args.greets_first).validate()
        outcome = asyncio.run(
            run_scenario(
                scenario,
                target=args.target,
                impairments=imp,
                nats_url=args.nats_url or None,
                wav=Path(args.wav) if args.wav else None,
            )
        )
    except PhoneAgentError as exc:
        print(f"phone-agent call: {exc}", file=sys.stderr)
        return 2
    print(outcome.text)
    return 0 if outcome.passed else 1


def demo(args: argparse.Namespace) -> int:
    from phoneagent.devtools.harness.demo import run_demo

    try:
        code, outcome = run_demo(Path(args.data_dir), args.scenario, ready_timeout=args.ready_timeout)
    except PhoneAgentError as exc:
        print(f"phone-agent demo: {exc}", file=sys.stderr)
        return 2
    if outcome is not None:
        print(outcome.text)
    return code


def bench(args: argparse.Namespace) -> int:
    from phoneagent.devtools.harness.bench import run_bench, table, write_json

    url = args.nats_url or os.environ.get("PA_NATS_URL", "")
    try:
        levels = [int(x) for x in args.calls.split(",") if x.strip()]
    except ValueError:
        print("phone-agent bench: --calls takes numbers like 1,2,4", file=sys.stderr)
        return 2
    if not url:
        print(
            "phone-agent bench: give --nats-url (or PA_NATS_URL): the hops are read from the bus",
            file=sys.stderr,
        )
        return 2
    try:
        report = asyncio.run(run_bench(levels, args.turns, url, args.target))
    except PhoneAgentError as exc:
        print(f"phone-agent bench: {exc}", file=sys.stderr)
        return 2
    print(table(report))
    if args.json:
        print(f"results: {write_json(report, Path(args.json))}")
    return 0
