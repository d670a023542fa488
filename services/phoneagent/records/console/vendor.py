"""The console's chart library, Chart.js (MIT), taken from its npm package at install time.

``python -m phoneagent.records.console.vendor`` fetches ``chart.js`` with the npm client (or reads
a tarball from ``npm pack`` given with ``--tarball``), checks the tarball's pinned SHA-256 and
copies its UMD build and licence into the console's ``static/vendor`` folder, which the console
serves. ``scripts/install.sh`` and the records image run it; without it the console still shows
every number, in tables, and says that the chart library is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SPEC = "chart.js@4.6.1"
TARBALL_SHA256 = "9345dacdf4bb4c5d40321f4b9aafab6fe676d37a534fc0bc2d17c4c4e29c4f00"
FILES = {"package/dist/chart.umd.min.js": "chart.umd.min.js", "package/LICENSE.md": "chart.js.LICENSE.md"}
VENDOR_DIR = Path(__file__).resolve().parent / "static" / "vendor"
SCRIPT = "chart.umd.min.js"


class VendorError(Exception):
    pass


def available(dest: Path = VENDOR_DIR) -> bool:
    return (dest / SCRIPT).is_file()


def npm_pack(workdir: Path) -> Path:
    """Fetch the tarball with the npm client (the registry only) into ``workdir``."""
    npm = shutil.which("npm")
    if npm is None:
        raise VendorError(f"npm is needed to fetch {SPEC}; install Node.js/npm or pass --tarball")
    try:
        subprocess.run(
            [npm, "pack", SPEC, "--silent"], cwd=workdir, check=True, timeout=300, capture_output=True
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise VendorError(f"'npm pack {SPEC}' failed; check registry access") from exc
    found = sorted(workdir.glob("chart.js-*.tgz"))
    if not found:
        raise VendorError(f"'npm pack {SPEC}' produced no tarball")
    return found[0]


def install(tarball: Path | None = None, dest: Path = VENDOR_DIR) -> Path:
    """Check ``tarball`` (fetched when not given) and copy the files the console serves to ``dest``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = tarball or npm_pack(Path(tmp))
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digest != TARBALL_SHA256:
            raise VendorError(f"{path.name}: sha256 {digest} is not the pinned one of {SPEC}")
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "r:gz") as tar:
            for member, name in FILES.items():
                src = tar.extractfile(member)
                if src is None:
                    raise VendorError(f"{member} is missing from {path.name}")
                (dest / name).write_bytes(src.read())
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Put {SPEC} where the operator console serves it.")
    parser.add_argument("--tarball", type=Path, help=f"use this 'npm pack {SPEC}' tarball instead of npm")
    parser.add_argument("--dest", type=Path, default=VENDOR_DIR, help="folder to write to")
    args = parser.parse_args(argv)
    try:
        dest = install(args.tarball, args.dest)
    except VendorError as exc:
        print(f"console vendor: {exc}", file=sys.stderr)
        return 1
    print(f"{SPEC} in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
