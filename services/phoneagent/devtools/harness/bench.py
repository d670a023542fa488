"""The end-to-end latency benchmark: per-turn hops on one time line, barge-in stop latency,
and a sweep of concurrent calls. Fixed scenario and seed, so runs compare across commits.

Every turn is tagged by how it was answered (the model wrote the reply, the model chose a tool
whose result code spoke, or code alone), and the hops, mouth-to-ear and the new prompt tokens the
model evaluated are reported per kind of turn (:mod:`~phoneagent.devtools.harness.bench_turns`
reads the time line and the tags from the bus). The questions make the model work: a knowledge
question, a question with a second part, a booking; one pure opening-hours question is the
code-answered control.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from phoneagent.devtools.harness.bench_turns import (
    KINDS,
    by_kind,
    call_turns,
    level_table,
    percentiles,
    preflight_outcomes,
    preflight_summary,
)
from phoneagent.devtools.harness.buswatch import BusWatch, CallTrace
from phoneagent.devtools.harness.caller import DEFAULT_TARGET, CallResult, SimulatedCaller, unique_user
from phoneagent.devtools.harness.impair import Impairments
from phoneagent.devtools.harness.scenario import BargeIn, Hangup, Say, Scenario, Wait
from phoneagent.devtools.harness.voice import CallerVoice
from phoneagent.runtime.bus import Bus
from phoneagent.runtime.errors import InvalidArgument

HOURS_CONTROL = "What are your opening hours on Monday?"  # exact and complete: answered in code
QUESTIONS = (
    "What should I bring to my first visit?",  # knowledge the model has to phrase
    HOURS_CONTROL,
    "When are you open, and do you take Delta Dental?",  # a question plus a second one
    "Can I book a cleaning next Tuesday at ten in the morning?",  # a booking
    "Do you accept Medicaid?",  # a yes/no the documents answer "no"
)
SEED = 1234


def bench_scenario(turns: int) -> Scenario:
    if not 1 <= turns <= 20:
        raise InvalidArgument("turns must be between 1 and 20")
    steps: list[Any] = [
        BargeIn("Hi, sorry, quick question.", after_ms=1500, timeout_s=120),
        Wait(timeout_s=120, silence_ms=3000),  # the answer, then the recording notice
    ]
    for i in range(turns):
        steps += [Say(QUESTIONS[i % len(QUESTIONS)]), Wait(timeout_s=120)]
    steps.append(Hangup())
    # New York (one-party consent): a recording notice, no consent question to answer.
    return Scenario("bench", tuple(steps), caller="+12125550100")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


async def run_level(
    concurrency: int, turns: int, target: str, watch: BusWatch, voice: CallerVoice
) -> dict[str, Any]:
    scenario = bench_scenario(turns)
    callers = []
    for i in range(concurrency):
        user = unique_user(scenario.caller)
        watch.watch(user)
        callers.append(
            SimulatedCaller(
                scenario, voice, target=target, caller_user=user, impairments=Impairments(seed=SEED + i)
            )
        )
    await asyncio.to_thread(callers[0].prepare)
    results = await asyncio.gather(*(c.run() for c in callers), return_exceptions=True)
    await asyncio.sleep(0.5)
    return summarise_level(concurrency, results, watch.traces)


def summarise_level(
    concurrency: int, results: Sequence[CallResult | BaseException], traces: dict[str, CallTrace]
) -> dict[str, Any]:
    """One concurrency level as the report keeps it: every caller turn with how it was answered
    (``turns``), the statistics per kind of turn (``by_kind``), the barge-in stop latency and the
    preemptive replies (``preflight``: how many were thrown away, the final -> first token hop
    with and without one)."""
    answered: list[dict[str, Any]] = []
    barge: list[float] = []
    failed = sent = thrown = 0
    for res in results:
        if not isinstance(res, CallResult):
            failed += 1
            continue
        trace = traces[res.caller_user]
        answered += [{"call": res.caller_user, **t} for t in call_turns(res, trace)]
        barge += [u.barge_stop_ms for u in res.utterances if u.barge_stop_ms is not None]
        n, k = preflight_outcomes(trace)
        sent, thrown = sent + n, thrown + k
    return {
        "concurrency": concurrency,
        "calls_failed": failed,
        "by_kind": by_kind(answered),
        "barge_in_stop_ms": percentiles(barge),
        "preflight": preflight_summary(answered, sent, thrown),
        "turns": answered,
    }


async def run_bench(
    levels: list[int], turns: int, nats_url: str, target: str = DEFAULT_TARGET
) -> dict[str, Any]:
    if not levels or any(not 1 <= n <= 64 for n in levels):
        raise InvalidArgument("--calls takes concurrency levels between 1 and 64")
    bus = Bus("harness-bench")
    await bus.connect(nats_url)
    voice = CallerVoice()
    try:
        watch = BusWatch(bus)
        await watch.start()
        sweep = [await run_level(n, turns, target, watch, voice) for n in levels]
    finally:
        voice.close()
        await bus.close()
    return {
        "benchmark": "end-to-end",
        "when_unix": int(time.time()),
        "machine": machine(),
        "scenario": "bench",
        "turns": turns,
        "questions": [QUESTIONS[i % len(QUESTIONS)] for i in range(turns)],
        "seed": SEED,
        "target": target,
        "kinds": KINDS,  # what each kind of turn in ``by_kind`` and ``turns`` means
        "sweep": sweep,
    }


def table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        f"machine: {m['cpu']} ({m['cores']} cores), python {m['python']}",
        f"scenario bench, {report['turns']} turns per call, seed {report['seed']}",
    ]
    for level in report["sweep"]:
        lines += level_table(level)
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return path
