"""The ``phone-agent`` command line."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
from pathlib import Path

SERVICE_CLASSES = {
    "edge": "phoneagent.edge.service:EdgeService",
    "asr": "phoneagent.asr.service:AsrService",
    "llm": "phoneagent.llm.service:LlmService",
    "tts": "phoneagent.tts.service:TtsService",
    "policy": "phoneagent.policy.service:PolicyService",
    "records": "phoneagent.records.service:RecordsService",
}


def _serve(args: argparse.Namespace) -> int:
    from phoneagent.runtime.service import main

    module, _, cls = SERVICE_CLASSES[args.service].partition(":")
    mod = importlib.import_module(module)
    settings_cls = getattr(mod, "SETTINGS", None)
    return main(getattr(mod, cls), settings_cls)


def _up(args: argparse.Namespace) -> int:
    from phoneagent.runtime.errors import PhoneAgentError
    from phoneagent.runtime.stack import SERVICES, Stack

    services = tuple(args.only.split(",")) if args.only else SERVICES
    stack = Stack(Path(args.data_dir), services)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stack.start(ready_timeout=args.ready_timeout)
        print(f"{'service':<8} {'pid':>7} {'http':>6}  status")
        for row in stack.status():
            extra = ", ".join(
                f"{k}={v}" for k, v in row.items() if k not in {"service", "pid", "port", "ready"}
            )
            print(
                f"{row['service']:<8} {row['pid']:>7} {row['port']:>6}  "
                f"{'ready' if row.get('ready') else 'NOT READY'}  {extra}"
            )
        print(f"logs in {Path(args.data_dir) / 'logs'}; Ctrl-C stops everything", flush=True)
        if args.exit_when_ready:
            return 0
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        return 0
    except PhoneAgentError as exc:
        print(f"phone-agent up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        print("stopping...", flush=True)
        stack.stop()
        print("stopped", flush=True)


def _config(args: argparse.Namespace) -> int:
    from phoneagent.runtime.settings import CommonSettings, describe

    classes = [("common", CommonSettings)]
    for name, target in SERVICE_CLASSES.items():
        module = target.partition(":")[0]
        try:
            settings_cls = getattr(importlib.import_module(module), "SETTINGS", None)
        except ImportError:
            continue
        if settings_cls is not None:
            classes.append((name, settings_cls))
    for name, cls in classes:
        print(f"[{name}]")
        for var, default, doc in describe(cls):
            print(f"  {var:<28} {default:<28} {doc}")
    return 0


def _call(args: argparse.Namespace) -> int:
    from phoneagent.devtools.harness.cli import call

    return call(args)


def _demo(args: argparse.Namespace) -> int:
    from phoneagent.devtools.harness.cli import demo

    return demo(args)


def _bench(args: argparse.Namespace) -> int:
    from phoneagent.devtools.harness.cli import bench

    return bench(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="phone-agent", description="Self-hostable AI phone agent")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run one service in the foreground")
    s.add_argument("service", choices=sorted(SERVICE_CLASSES))
    s.set_defaults(func=_serve)
    u = sub.add_parser("up", help="run the local stack: nats-server and every service, until Ctrl-C")
    u.add_argument("--data-dir", default="var/local", help="where NATS data and logs go (default var/local)")
    u.add_argument("--only", default="", help="comma-separated services to start (default all)")
    u.add_argument("--ready-timeout", type=float, default=300.0)
    u.add_argument("--exit-when-ready", action="store_true", help="stop again once every service is ready")
    u.set_defaults(func=_up)
    c = sub.add_parser("config", help="list every environment variable the services read")
    c.set_defaults(func=_config)
    from phoneagent.devtools.harness.cli import add_bench_args, add_call_args, add_demo_args

    add_call_args(sub.add_parser("call", help="place one scripted call against a running stack"), _call)
    add_demo_args(sub.add_parser("demo", help="start the stack, play the demo call, stop the stack"), _demo)
    add_bench_args(
        sub.add_parser("bench", help="end-to-end latency benchmark against a running stack"), _bench
    )
    from phoneagent.policy.commands import add_audit_args
    from phoneagent.records.campaign_cli import add_campaign_args

    add_audit_args(sub.add_parser("audit", help="print policy decisions from the audit stream"))
    add_campaign_args(sub.add_parser("campaign", help="outbound campaigns: start one from a contact CSV"))
    from phoneagent.policy.lists_cli import add_consent_args, add_dnc_args

    add_dnc_args(sub.add_parser("dnc", help="do-not-call lists: import a file, add, remove, list"))
    add_consent_args(sub.add_parser("consent", help="consent records: add, import a file, revoke, list"))
    from phoneagent.records.commands import add_calls_args

    add_calls_args(sub.add_parser("calls", help="call records: list calls, show one call"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
