"""Several calls in one llama.cpp context: ``python -m phoneagent.devtools.llm_batch_bench``.

The CPU engine runs one generation at a time, so turns of calls that arrive together wait for
each other. llama.cpp can instead decode one token of several sequences in one batch (each call
a sequence over a shared, evaluated prefix). This measures what that would buy on this machine,
with the engine's model file: the time of one decoding step for 1, 2, 4 and 8 sequences (one
token each, all after the same prefix), and of a 32-token prompt chunk alone and with three
sequences decoding beside it. Tokens per second over all sequences is what several calls share.

Nothing here is the product's code path; it answers whether batching calls is worth building.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

from phoneagent.llm.models import DEFAULT_MODEL, model_path

_TOKEN = 500  # any ordinary token: the cost of a step does not depend on which


class BatchRig:
    """One llama.cpp context with ``seqs`` sequences sharing a ``prefix``-token evaluated prompt."""

    def __init__(self, model: str, threads: int, seqs: int, prefix: int) -> None:
        import llama_cpp as lib

        self.lib = lib
        path = model_path(model)
        if not path.is_file():
            raise SystemExit(f"llm_batch_bench: model file {path.name} not found (make models)")
        # llama.cpp's load log would bury the figures: the binding prints it at this logger's
        # level (a callback of our own would be freed while llama.cpp still held it).
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        lib.llama_backend_init()
        self.model = lib.llama_model_load_from_file(str(path).encode(), lib.llama_model_default_params())
        params = lib.llama_context_default_params()
        params.n_ctx, params.n_batch, params.n_ubatch = 8192, 512, 512
        params.n_seq_max, params.kv_unified = seqs, True  # one cache: the prefix is held once
        params.n_threads = params.n_threads_batch = threads
        self.ctx = lib.llama_init_from_model(self.model, params)
        self.batch = lib.llama_batch_init(512, 0, seqs)
        self.pos = dict.fromkeys(range(seqs), 0)
        started = time.perf_counter()
        for start in range(0, prefix, 256):
            n = min(256, prefix - start)
            self.decode([(100 + (start + i) % 1000, start + i, 0) for i in range(n)])
        self.prefix_s = time.perf_counter() - started
        memory = lib.llama_get_memory(self.ctx)
        for s in range(1, seqs):
            lib.llama_memory_seq_cp(memory, 0, s, -1, -1)  # shares the cells: nothing computed
        self.pos = dict.fromkeys(range(seqs), prefix)

    def decode(self, tokens: Sequence[tuple[int, int, int]]) -> None:
        """One llama_decode of (token, position, sequence) entries; logits for every entry."""
        b: Any = self.batch
        b.n_tokens = len(tokens)
        for i, (token, pos, seq) in enumerate(tokens):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, pos, 1, True
            b.seq_id[i][0] = seq
        if self.lib.llama_decode(self.ctx, b) != 0:
            raise SystemExit("llm_batch_bench: llama_decode failed")

    def step(self, decoding: Sequence[int], prompt_seq: int | None = None, chunk: int = 0) -> float:
        """Seconds for one decode of a token for each of ``decoding`` (and ``chunk`` prompt
        tokens of ``prompt_seq``)."""
        tokens = [(_TOKEN, self.pos[s], s) for s in decoding]
        if prompt_seq is not None:
            tokens += [(_TOKEN + 1, self.pos[prompt_seq] + i, prompt_seq) for i in range(chunk)]
        started = time.perf_counter()
        self.decode(tokens)
        took = time.perf_counter() - started
        for s in decoding:
            self.pos[s] += 1
        if prompt_seq is not None:
            self.pos[prompt_seq] += chunk
        return took

    def close(self) -> None:
        lib = self.lib
        lib.llama_batch_free(self.batch)
        lib.llama_free(self.ctx)
        lib.llama_model_free(self.model)


def _ms(values: list[float]) -> float:
    values = sorted(values)
    return 1000 * values[len(values) // 2]


def run(model: str, threads: int, prefix: int, steps: int) -> list[str]:
    rig = BatchRig(model, threads, 8, prefix)
    try:
        lines = [f"prefix of {prefix} tokens evaluated in {rig.prefix_s:.2f} s"]
        one = 0.0
        for n in (1, 2, 4, 8):
            ms = _ms([rig.step(range(n)) for _ in range(steps)])
            one = one or ms
            lines.append(
                f"decode step, {n} sequence(s): {ms:6.1f} ms median = {1000 * n / ms:5.1f} tokens/s "
                f"({one * n / ms:.2f}x one sequence's throughput)"
            )
        alone = _ms([rig.step([], 7, 32) for _ in range(max(3, steps // 4))])
        beside = _ms([rig.step([0, 1, 2], 6, 32) for _ in range(max(3, steps // 4))])
        lines.append(
            f"32 prompt tokens: {alone:6.1f} ms alone, {beside:6.1f} ms with 3 sequences decoding beside"
        )
        return lines
    finally:
        rig.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m phoneagent.devtools.llm_batch_bench", description=__doc__)
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prefix", type=int, default=2446, help="shared prompt tokens (the agent's is 2446)")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args(argv)
    cells = args.prefix + 15 * args.steps + 64 * max(3, args.steps // 4)  # the cache they all share
    if args.threads < 1 or args.prefix < 1 or args.steps < 1 or cells > 8192:
        print(
            "llm_batch_bench: threads, prefix and steps must be positive and fit 8192 tokens", file=sys.stderr
        )
        return 2
    cpu = platform.processor() or platform.machine()
    print(f"{args.model}, {args.threads} threads, {os.cpu_count()} CPUs, {cpu}")
    for line in run(args.model, args.threads, args.prefix, args.steps):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
