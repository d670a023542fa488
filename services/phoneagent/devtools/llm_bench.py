"""LLM latency benchmark: ``python -m phoneagent.devtools.llm_bench``.

Streams a set of short phone-receptionist turns through one engine and prints time to
first token (TTFT), time to first speakable chunk (what TTS can start on, cut by
:class:`~phoneagent.llm.streaming.SentenceSplitter`) and decode rate. Each run reuses the
same system prompt, as a call does, so the numbers include llama.cpp's prefix reuse.
The first run warms the engine and is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass

from phoneagent.llm.engines.base import LlmEngine, create_engine
from phoneagent.llm.streaming import SentenceSplitter

SYSTEM_PROMPT = (
    "You are the phone receptionist of Riverside Dental Clinic. Speak in short, friendly sentences "
    "suited to a phone call; never use lists or markdown. Opening hours: Monday to Friday 8 a.m. to "
    "6 p.m., Saturday 9 a.m. to 1 p.m., closed on Sunday. Address: 14 Mill Street. A check-up costs "
    "85 dollars; cleaning costs 120 dollars. You can book, move or cancel appointments."
)
QUESTIONS = (
    "Hi, are you open on Saturday?",
    "How much does a cleaning cost?",
    "Where exactly are you located?",
    "I need to cancel my appointment for tomorrow.",
    "Can I book a check-up next week?",
    "Do you take new patients?",
)


@dataclass
class Sample:
    ttft: float
    first_chunk: float
    tokens_per_s: float


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def one_turn(engine: LlmEngine, question: str, request_id: str, max_tokens: int) -> Sample:
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    splitter = SentenceSplitter()
    start = time.perf_counter()
    ttft = first_chunk = end = 0.0
    tokens = 0
    async for delta in engine.stream(messages, request_id=request_id, max_tokens=max_tokens, temperature=0.0):
        now = time.perf_counter() - start
        if delta.text and not ttft:
            ttft = now
        if delta.text and not first_chunk and splitter.push(delta.text):
            first_chunk = now
        if delta.final:
            end = now
            tokens = delta.completion_tokens or 0
    if not first_chunk:
        first_chunk = end
    decode_s = end - ttft
    rate = (tokens - 1) / decode_s if tokens > 1 and decode_s > 0 else 0.0
    return Sample(ttft, first_chunk, rate)


def engine_options(args: argparse.Namespace) -> dict[str, object]:
    if args.engine == "llama_cpp":
        return {"model": args.model, "n_threads": args.n_threads, "n_ctx": args.n_ctx}
    if args.engine == "openai_http":
        return {"base_url": args.base_url, "model": args.model}
    return {"model": args.model}


async def run(args: argparse.Namespace) -> list[Sample]:
    engine = create_engine(args.engine, **engine_options(args))
    started = time.perf_counter()
    await asyncio.to_thread(engine.load)
    print(f"load: {time.perf_counter() - started:.2f} s")
    try:
        await one_turn(engine, QUESTIONS[0], "warm-up", args.max_tokens)
        samples = []
        for i in range(args.runs):
            question = QUESTIONS[i % len(QUESTIONS)]
            samples.append(await one_turn(engine, question, f"bench-{i}", args.max_tokens))
        return samples
    finally:
        await engine.close()


def report(args: argparse.Namespace, samples: list[Sample]) -> None:
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"engine={args.engine} model={args.model} n_threads={args.n_threads} runs={len(samples)} "
        f"max_tokens={args.max_tokens} cpus={os.cpu_count()} load1={load1:.2f} "
        f"python={platform.python_version()}"
    )
    for label, values, unit in (
        ("time to first token", [s.ttft * 1000 for s in samples], "ms"),
        ("time to first chunk", [s.first_chunk * 1000 for s in samples], "ms"),
        ("decode rate", [s.tokens_per_s for s in samples], "tok/s"),
    ):
        print(
            f"{label:<20} p50 {percentile(values, 0.5):8.1f} {unit}   p95 {percentile(values, 0.95):8.1f} "
            f"{unit}   mean {statistics.fmean(values):8.1f} {unit}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phoneagent.devtools.llm_bench", description=__doc__)
    parser.add_argument("--engine", default="llama_cpp", help="llama_cpp, openai_http or vllm")
    parser.add_argument(
        "--model",
        default="qwen-0.5b",
        help="llama_cpp: qwen-0.5b or qwen-1.5b; others: the served model name or directory",
    )
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="openai_http server")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--n-threads", type=int, default=1)
    parser.add_argument("--n-ctx", type=int, default=2048)
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    samples = asyncio.run(run(args))
    report(args, samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
