"""Locating, assembling and verifying model weights shipped in registry packages.

Weights never come from a hub at run time: they are installed as Python packages
(one extra per engine), sometimes split into parts that must be joined. This module
joins parts, verifies sha256 digests, and raises :class:`MissingModelError` naming the
extra or package to install when something is absent or corrupt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from phoneagent.runtime.errors import ErrorKind, PhoneAgentError

_CHUNK = 4 * 1024 * 1024


class MissingModelError(PhoneAgentError):
    """A model's weights are not installed, or are not the expected bytes."""

    def __init__(self, message: str, *, extra: str | None = None, package: str | None = None) -> None:
        hint = []
        if extra:
            hint.append(f"pip install 'phone-agent[{extra}]'")
        if package:
            hint.append(f"(package {package})")
        full = message if not hint else f"{message}; install with {' '.join(hint)}"
        super().__init__(ErrorKind.MODEL_UNAVAILABLE, full)
        self.extra = extra
        self.package = package


def cache_dir() -> Path:
    """Where assembled weights are written (``PA_MODEL_DIR``, default ``~/.cache/phone-agent/models``)."""
    env = os.environ.get("PA_MODEL_DIR")
    base = Path(env) if env else Path.home() / ".cache" / "phone-agent" / "models"
    base.mkdir(parents=True, exist_ok=True)
    return base


def package_dir(module: str, *, extra: str, package: str) -> Path:
    """Directory of an installed (possibly data-only) package, or a MissingModelError."""
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise MissingModelError(f"model package {package!r} is not installed", extra=extra, package=package)
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    if spec.origin:
        return Path(spec.origin).parent
    raise MissingModelError(f"model package {package!r} has no files", extra=extra, package=package)


def sha256_file(path: Path, progress: Callable[[int, int], None] | None = None) -> str:
    h = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return h.hexdigest()


def verify(path: Path, sha256: str, *, extra: str, package: str) -> Path:
    """Check that ``path`` exists and has the expected digest."""
    if not path.is_file():
        raise MissingModelError(f"model file {path.name} not found", extra=extra, package=package)
    digest = sha256_file(path)
    if digest != sha256:
        raise MissingModelError(
            f"model file {path.name} has sha256 {digest[:12]}…, expected {sha256[:12]}…",
            extra=extra,
            package=package,
        )
    return path


def assemble(
    parts: Iterable[Path],
    dest: Path,
    sha256: str,
    *,
    extra: str,
    package: str,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Concatenate ``parts`` in order into ``dest`` and verify it; reuse ``dest`` when already valid.

    Writes to a temporary file and renames it into place, so a crash never leaves a
    half-written file that looks complete.
    """
    parts = list(parts)
    marker = dest.with_suffix(dest.suffix + ".sha256")
    if dest.is_file() and marker.is_file() and marker.read_text().strip() == sha256:
        return dest
    for p in parts:
        if not p.is_file():
            raise MissingModelError(f"model part {p.name} not found", extra=extra, package=package)
    total = sum(p.stat().st_size for p in parts)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    h = hashlib.sha256()
    done = 0
    try:
        with tmp.open("wb") as out:
            for p in parts:
                with p.open("rb") as f:
                    while chunk := f.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress:
                            progress(done, total)
        digest = h.hexdigest()
        if digest != sha256:
            raise MissingModelError(
                f"assembled {dest.name} has sha256 {digest[:12]}…, expected {sha256[:12]}…",
                extra=extra,
                package=package,
            )
        os.replace(tmp, dest)
        marker.write_text(sha256 + "\n")
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


def progress_bar(label: str) -> Callable[[int, int], None]:
    """A terminal progress bar callback for :func:`assemble` (prints to stderr)."""
    last = [-1]

    def show(done: int, total: int) -> None:
        pct = int(done * 100 / total) if total else 100
        if pct == last[0]:
            return
        last[0] = pct
        bar = "#" * (pct // 4)
        sys.stderr.write(f"\r{label:<32} [{bar:<25}] {pct:3d}% {done / 1e6:8.1f} MB")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show
