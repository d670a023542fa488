"""Model turns in process: ``python -m phoneagent.devtools.llm_turns``.

Runs the LLM service's dialog (real engine, prompt, tools, documents and appointment book, the
clock fixed as in :mod:`phoneagent.devtools.llm_eval`) over the phone bench's questions, for
several calls whose turns interleave (call 1 turn 1, call 2 turn 1, ..., call 1 turn 2, ...),
as a llama.cpp context shared by concurrent calls sees them. For every turn it prints how the
reply was answered, the prompt tokens the model evaluated, the time from the caller's final
transcript to the first model token and to the first sentence, and the reply. No audio, no bus:
this isolates the dialog hop (``ASR final -> first sentence``) that the SIP bench measures as
part of mouth-to-ear.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from phoneagent.devtools.harness.bench import QUESTIONS
from phoneagent.devtools.llm_eval import Rig
from phoneagent.llm.dialog import Dialog
from phoneagent.llm.dialog_state import Answered, Sentence
from phoneagent.llm.models import MODELS
from phoneagent.llm.settings import PROMPT_DOCUMENTS_CHARS
from phoneagent.runtime.errors import PhoneAgentError

TURN_TIMEOUT_S = 120.0


@dataclass
class Turn:
    call: int
    question: str
    answered: Answered = Answered.CODE
    evaluated: int | None = None
    first_token_s: float | None = None
    first_sentence_s: float | None = None
    total_s: float = 0.0
    said: list[str] = field(default_factory=list)


class _Listener:
    """Collects one turn's sentences as the dialog publishes them."""

    def __init__(self) -> None:
        self.turn: Turn | None = None
        self.started = 0.0

    async def __call__(self, s: Sentence) -> None:
        turn = self.turn
        if turn is None or s.turn == 0:
            return
        if s.final:
            turn.answered, turn.evaluated = s.answered_by, s.prompt_tokens_evaluated
            return
        if not turn.said:
            turn.first_sentence_s = time.perf_counter() - self.started
            if s.first_token_unix_ns and s.request_unix_ns:
                turn.first_token_s = (s.first_token_unix_ns - s.request_unix_ns) / 1e9
        turn.said.append(s.text)


async def _turn(dialog: Dialog, listener: _Listener, turn: Turn) -> None:
    listener.turn, listener.started = turn, time.perf_counter()
    await dialog.on_user_turn(dialog.state.turn + 1, turn.question)
    reply = dialog.reply
    if reply is not None and reply.task is not None:
        await asyncio.wait_for(asyncio.shield(reply.task), TURN_TIMEOUT_S)
        await dialog.on_playback_done(reply.generation)
    turn.total_s = time.perf_counter() - listener.started
    if dialog.prefilling is not None:  # the caller listens to the reply meanwhile
        await asyncio.wait_for(asyncio.shield(dialog.prefilling), TURN_TIMEOUT_S)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f}"


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="pa-llm-turns-") as tmp:
        try:
            rig = await Rig.open(
                Path(tmp),
                model=args.model,
                threads=args.threads,
                max_tokens=args.max_tokens,
                documents_chars=args.prompt_documents_chars,
            )
        except PhoneAgentError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        turns: list[Turn] = []
        try:
            await rig.warm_up()
            calls = []
            for c in range(args.calls):
                listener = _Listener()
                dialog, _ = rig.dialog(f"turns-{c}", caller=f"+1555020{c:04d}", publish=listener)
                await dialog.greet()
                if dialog.prefilling is not None:  # the greeting plays meanwhile
                    await asyncio.wait_for(asyncio.shield(dialog.prefilling), TURN_TIMEOUT_S)
                calls.append((dialog, listener))
            for t in range(args.turns):
                for c, (dialog, listener) in enumerate(calls):
                    turn = Turn(c + 1, QUESTIONS[(t + c) % len(QUESTIONS)])
                    await _turn(dialog, listener, turn)
                    turns.append(turn)
                    print(
                        f"call {turn.call} {turn.answered.name.lower():<10} "
                        f"eval={turn.evaluated if turn.evaluated is not None else '-':>5} "
                        f"first_token={_ms(turn.first_token_s):>6} ms "
                        f"first_sentence={_ms(turn.first_sentence_s):>6} ms  "
                        f"{turn.question!r} -> {' '.join(turn.said)!r}",
                        flush=True,
                    )
            for dialog, _ in calls:
                await dialog.close()
        finally:
            await rig.close()
    load1 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model={args.model} threads={args.threads} calls={args.calls} turns={args.turns} "
        f"documents_in_prompt={args.prompt_documents_chars > 0} load1={load1:.2f}"
    )
    for kinds, label in (
        ((Answered.MODEL, Answered.MODEL_TOOL), "model turns"),
        ((Answered.CODE,), "code-answered turns"),
    ):
        chosen = [t for t in turns if t.answered in kinds]
        firsts = [t.first_sentence_s for t in chosen if t.first_sentence_s is not None]
        evals = [t.evaluated for t in chosen if t.evaluated is not None]
        if not chosen:
            continue
        line = f"{label}: {len(chosen)}"
        if firsts:
            p50, p95 = _p(firsts, 0.5) * 1000, _p(firsts, 0.95) * 1000
            line += f"; final -> first sentence p50 {p50:.0f} ms, p95 {p95:.0f} ms"
        if evals:
            median, e95 = statistics.median(evals), _p([float(e) for e in evals], 0.95)
            line += f"; new prompt tokens median {median:.0f}, p95 {e95:.0f}"
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phoneagent.devtools.llm_turns", description=__doc__)
    parser.add_argument("--model", choices=sorted(MODELS), default="qwen-0.5b")
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp decoding threads")
    parser.add_argument("--max-tokens", type=int, default=64, help="reply length limit per generation")
    parser.add_argument("--calls", type=int, default=2, help="calls whose turns interleave")
    parser.add_argument("--turns", type=int, default=5, help="caller turns per call")
    parser.add_argument(
        "--prompt-documents-chars",
        type=int,
        default=PROMPT_DOCUMENTS_CHARS,
        help="documents up to this size go in the system prompt; 0: passages ride with the caller's words",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.calls <= 16 or not 1 <= args.turns <= 20:
        parser.error("--calls must be 1-16 and --turns 1-20")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
