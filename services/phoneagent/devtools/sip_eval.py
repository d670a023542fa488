"""Scripted-caller evaluation over real SIP: ``python -m phoneagent.devtools.sip_eval``.

For each model asked for, the local stack starts (nats-server, edge, ASR, LLM, TTS, policy,
records, as ``phone-agent up`` runs them, with Piper), and every scenario of the chosen sets
(``harness/eval/tune.yaml``, the set prompts may be tuned on; ``heldout.yaml`` and
``heldout2.yaml``, never tuned on, the second written once the first's failures had been read)
is played by the harness's simulated caller over SIP and G.711, one call at a time, each with
the appointment book as the first found it (the bookings an earlier scenario left are cancelled
first: two scenarios asking for the same slot must not depend on their order). A scenario
succeeds when every one of its expectations holds (what the agent said, the
appointment booked, moved or cancelled in the database, the transfer, the opt-out). The table
and the task-success rate per model and set are printed; nothing is retried. What the agent said
is what the harness heard, transcribed by its own recogniser; a check that passed (or failed) only
on the words the agent sent to speech, because that recogniser misheard them, is named in the
scenario's line and counted in the table (:func:`~phoneagent.devtools.harness.checks.misheard`).

Reply latency here is the caller's own clock (its last voiced sample to the agent's first
audio) over every caller turn of the evaluation, model and code turns together; the per-kind
split is ``phone-agent bench``'s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from phoneagent.devtools.harness.checks import MISHEARD, free_the_book
from phoneagent.devtools.harness.demo import demo_stack
from phoneagent.devtools.harness.scenario import Scenario, ScenarioError, parse_scenario
from phoneagent.devtools.harness.session import run_scenario
from phoneagent.devtools.harness.voice import AgentTranscriber
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.stack import Stack

SETS = ("tune", "heldout", "heldout2")


@dataclass
class ScenarioResult:
    model: str
    set: str
    name: str
    passed: bool
    failed: list[str] = field(default_factory=list)
    reply_latency_ms: list[float] = field(default_factory=list)
    agent_text: str = ""
    # Checks decided on the agent's sent words because the harness's recogniser misheard them.
    misheard: list[str] = field(default_factory=list)


def load_set(name: str) -> list[Scenario]:
    """The scenarios of one evaluation set; :class:`ScenarioError` names the entry at fault."""
    if name not in SETS:
        raise ScenarioError(f"unknown evaluation set {name!r}; one of {', '.join(SETS)}")
    res = resources.files("phoneagent.devtools.harness") / "eval" / f"{name}.yaml"
    data = yaml.safe_load(res.read_text(encoding="utf-8"))
    if not isinstance(data, list) or not data:
        raise ScenarioError(f"{name}.yaml: expected a non-empty list of scenarios")
    scenarios = [parse_scenario(entry, f"{name}.yaml entry {i}") for i, entry in enumerate(data, 1)]
    names = [s.name for s in scenarios]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ScenarioError(f"{name}.yaml: scenario names used twice: {', '.join(dup)}")
    return scenarios


async def _run_all(
    model: str, sets: dict[str, list[Scenario]], target: str, stack: Stack, seed: int
) -> list[ScenarioResult]:
    assert stack.nats is not None
    transcriber = await asyncio.to_thread(AgentTranscriber)
    out: list[ScenarioResult] = []
    for set_name, scenarios in sets.items():
        for scenario in scenarios:
            started = time.monotonic()
            await asyncio.to_thread(free_the_book)
            try:
                outcome = await run_scenario(
                    scenario,
                    target=target,
                    nats_url=stack.nats.url,
                    transcriber=transcriber,
                    seed=seed,
                    bus_auth=stack.nats.auth("harness"),
                )
            except PhoneAgentError as exc:
                out.append(ScenarioResult(model, set_name, scenario.name, False, [f"call failed: {exc}"]))
                print(f"  {set_name:8} {scenario.name:28} FAIL  call failed: {exc}", flush=True)
                continue
            failed = [f"{c.expectation.describe()}: {c.detail}" for c in outcome.checks if not c.passed]
            lat = [u.reply_latency_ms for u in outcome.result.utterances if u.reply_latency_ms is not None]
            misheard = [
                f"{c.expectation.describe()}: {c.detail}" for c in outcome.checks if MISHEARD in c.detail
            ]
            text = outcome.result.agent_text
            res = ScenarioResult(model, set_name, scenario.name, outcome.passed, failed, lat, text, misheard)
            out.append(res)
            took = time.monotonic() - started
            verdict = "ok  " if res.passed else "FAIL"
            notes = "; ".join(failed + misheard)
            line = f"  {set_name:8} {scenario.name:28} {verdict}  {took:5.0f} s  {notes}"
            print(line, flush=True)
    return out


def run_model(
    model: str, sets: dict[str, list[Scenario]], data_dir: Path, seed: int, ready_timeout: float = 900.0
) -> list[ScenarioResult]:
    """Start the local stack with ``model`` and play every scenario against it."""
    with demo_stack(data_dir / model, ready_timeout, {"PA_LLM_MODEL": model}) as (stack, target):
        return asyncio.run(_run_all(model, sets, target, stack, seed))


def summary(results: list[ScenarioResult]) -> str:
    rows = [
        "| model | set | task success | reply latency p50 / p95 (all turns) | checks decided on the agent's"
        " sent words (misheard by the harness) |",
        "|---|---|---|---|---|",
    ]
    for model in dict.fromkeys(r.model for r in results):
        for set_name in SETS:
            mine = [r for r in results if r.model == model and r.set == set_name]
            if not mine:
                continue
            ok = sum(r.passed for r in mine)
            lat = sorted(x for r in mine for x in r.reply_latency_ms)
            p = (
                f"{statistics.median(lat):.0f} / {lat[min(len(lat) - 1, int(0.95 * len(lat)))]:.0f} ms"
                if lat
                else "-"
            )
            rate = f"{ok} of {len(mine)} ({100 * ok / len(mine):.0f} %)"
            misheard = sum(len(r.misheard) for r in mine)
            rows.append(f"| {model} | {set_name} | {rate} | {p} | {misheard} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m phoneagent.devtools.sip_eval", description="Scripted-caller evaluation over real SIP"
    )
    ap.add_argument("--models", default="qwen-0.5b", help="comma-separated (qwen-0.5b,qwen-1.5b)")
    ap.add_argument(
        "--sets", default="tune,heldout,heldout2", help="comma-separated: tune, heldout, heldout2"
    )
    ap.add_argument("--only", default="", help="comma-separated scenario names")
    ap.add_argument("--data-dir", default="var/eval", help="one stack directory per model, kept")
    ap.add_argument("--seed", type=int, default=0, help="varies the callers' voices and pauses")
    ap.add_argument("--json", default="", help="write every scenario's result here")
    ap.add_argument("--ready-timeout", type=float, default=900.0, help="seconds for a stack to start")
    args = ap.parse_args(argv)
    try:
        sets = {name: load_set(name) for name in args.sets.split(",") if name.strip()}
    except ScenarioError as exc:
        print(f"sip_eval: {exc}", file=sys.stderr)
        return 2
    if args.only:
        wanted = {n.strip() for n in args.only.split(",") if n.strip()}
        sets = {k: [s for s in v if s.name in wanted] for k, v in sets.items()}
        unknown = wanted - {s.name for v in sets.values() for s in v}
        if unknown:
            print(f"sip_eval: no scenario named {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    results: list[ScenarioResult] = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        print(f"model {model}:", flush=True)
        try:
            results += run_model(model, sets, Path(args.data_dir), args.seed, args.ready_timeout)
        except PhoneAgentError as exc:
            print(f"sip_eval: {model}: {exc}", file=sys.stderr)
            return 2
    print(summary(results))
    if args.json:
        data: list[dict[str, Any]] = [asdict(r) for r in results]
        Path(args.json).write_text(json.dumps(data, indent=2), encoding="utf-8")
        print(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
