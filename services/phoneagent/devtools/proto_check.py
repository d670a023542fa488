"""Fail when the generated Python code in ``services/phoneagent/v1`` is stale.

Regenerates every ``proto/phoneagent/v1/*.proto`` with grpcio-tools into a temporary
directory and compares it with the committed files (``make proto`` updates them).
"""

from __future__ import annotations

import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO = ROOT / "proto"
GEN = ROOT / "services" / "phoneagent" / "v1"


def generate(out: Path) -> None:
    from grpc_tools import protoc

    files = sorted(str(p.relative_to(PROTO)) for p in (PROTO / "phoneagent" / "v1").glob("*.proto"))
    args = ["protoc", f"-I{PROTO}", f"--python_out={out}", f"--pyi_out={out}", *files]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    if (
        protoc.main(["protoc", f"-I{PROTO}", f"--grpc_python_out={out}", "phoneagent/v1/control_api.proto"])
        != 0
    ):
        raise SystemExit("protoc (grpc) failed")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        generate(out)
        fresh = {p.name for p in (out / "phoneagent" / "v1").iterdir()}
        committed = {p.name for p in GEN.iterdir() if p.name != "__init__.py" and p.suffix in (".py", ".pyi")}
        problems = sorted(fresh ^ committed)
        for name in sorted(fresh & committed):
            if not filecmp.cmp(out / "phoneagent" / "v1" / name, GEN / name, shallow=False):
                problems.append(name)
    if problems:
        print("generated code is stale; run `make proto` and commit:", ", ".join(problems), file=sys.stderr)
        return 1
    print("generated code is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
