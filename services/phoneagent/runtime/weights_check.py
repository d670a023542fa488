"""Weights an image build takes from a build context, checked against their SHA256SUMS.

No registry ships the GPU weights (vLLM safetensors, Kokoro's ``.pth``, the whisperx alignment
model), so the CUDA images copy them from a ``models`` build context. That context must hold a
``SHA256SUMS`` file (``sha256sum`` format, paths relative to the context) that names every
file in it; this step checks each digest, refuses a file the manifest does not name, and only
then copies the files into the model directory. An empty context passes (the weights then come
from a mounted model volume).

    python -m phoneagent.runtime.weights_check [--source DIR] [--dest DIR]

Make the manifest where the weights are:
``find . -type f ! -name SHA256SUMS -exec sha256sum {} + > SHA256SUMS``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from phoneagent.runtime.modelfiles import MissingModelError, sha256_file

MANIFEST = "SHA256SUMS"


def read_manifest(path: Path) -> dict[str, str]:
    """``relative path -> sha256`` from a ``sha256sum`` output file."""
    out: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.lstrip(" *").removeprefix("./")
        if len(digest) != 64 or not name or ".." in Path(name).parts or Path(name).is_absolute():
            raise MissingModelError(f"{path.name} line {n} is not '<sha256>  <relative path>'")
        out[name] = digest.lower()
    return out


def check(source: Path) -> list[str]:
    """The files of ``source`` (relative paths), each checked against its manifest entry."""
    files = sorted(
        str(p.relative_to(source)) for p in source.rglob("*") if p.is_file() and p.name != MANIFEST
    )
    if not files:
        return []
    manifest_path = source / MANIFEST
    if not manifest_path.is_file():
        raise MissingModelError(f"the models build context has no {MANIFEST}; weights are not checked")
    manifest = read_manifest(manifest_path)
    unlisted = [f for f in files if f not in manifest]
    if unlisted:
        raise MissingModelError(f"files not in {MANIFEST}: {', '.join(unlisted[:5])}")
    missing = [f for f in manifest if f not in files]
    if missing:
        raise MissingModelError(f"files in {MANIFEST} but not in the context: {', '.join(missing[:5])}")
    for name in files:
        digest = sha256_file(source / name)
        if digest != manifest[name]:
            raise MissingModelError(
                f"{name} has sha256 {digest[:12]}…, {MANIFEST} says {manifest[name][:12]}…"
            )
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check build-context weights against SHA256SUMS and copy them."
    )
    parser.add_argument(
        "--source", type=Path, default=None, help="the copied build context (none: nothing to do)"
    )
    parser.add_argument("--dest", type=Path, default=None, help="the model directory to copy the files into")
    args = parser.parse_args(argv)
    if args.source is None:
        print("no models build context given: nothing to check")
        return 0
    files = check(args.source)
    if args.dest is not None:
        args.dest.mkdir(parents=True, exist_ok=True)
        for name in files + ([MANIFEST] if files else []):
            target = args.dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(args.source / name, target)
    print(f"{len(files)} weight files match {MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
