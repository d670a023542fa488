"""Stages meet only over the bus: no stage imports another.

Every module of a stage package (edge, asr, llm, tts, policy, records) may import its own
stage, the runtime, the audio helpers, the agent definition and the generated contracts --
nothing else of the package. The shared packages below the stages import no stage at all.
Imports inside functions count too (a lazy import still loads the other stage in the pod).
The modules listed in EXEMPT are development tools that drive stages by design; the entry
points beside the stages (``phoneagent/cli.py``, ``phoneagent/models.py``) are not in any
stage package and are not checked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "services" / "phoneagent"
STAGES = ("edge", "asr", "llm", "tts", "policy", "records")
SHARED = ("runtime", "audio", "agents", "v1")
BELOW_STAGES = ("runtime", "audio", "agents")

# Development tools and entry points: they drive several stages by design. Each entry is one
# module (or one folder), so a new module in a stage is checked unless it is added here.
EXEMPT: set[str] = set()
EXEMPT_DIRS = ("devtools/",)

# Crossings that the moves of other open work remove (issue 15): each is (module, imported stage).
# Empty this set as they land; a pair listed here that no longer crosses fails the test, so the
# list cannot go stale.
KNOWN_PENDING: set[tuple[str, str]] = set()


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path`` (a module under the package folder
    ``root``), at any depth: function-local imports included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            out.append((node.lineno, module))
            # ``from phoneagent import llm`` imports a stage too
            if module == "phoneagent":
                out.extend((node.lineno, f"phoneagent.{alias.name}") for alias in node.names)
    return out


def _exempt(rel: str) -> bool:
    return rel in EXEMPT or rel.startswith(EXEMPT_DIRS)


def crossings(root: Path = PACKAGE) -> dict[tuple[str, str], list[str]]:
    """(module, other stage or package) -> where it is imported, for every forbidden import."""
    found: dict[tuple[str, str], list[str]] = {}
    for top in (*STAGES, *BELOW_STAGES):
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if _exempt(rel):
                continue
            allowed = {top, *SHARED} if top in STAGES else set(SHARED)
            for line, module in imported_modules(path, root):
                parts = module.split(".")
                if parts[0] != "phoneagent" or len(parts) < 2 or parts[1] in allowed:
                    continue
                found.setdefault((rel, parts[1]), []).append(f"{rel}:{line} imports {module}")
    return found


def test_the_checked_packages_exist() -> None:
    for top in (*STAGES, *BELOW_STAGES):
        assert (PACKAGE / top / "__init__.py").is_file(), top
    for rel in EXEMPT:
        assert (PACKAGE / rel).is_file() or not (PACKAGE / rel).parent.is_dir(), f"stale exemption {rel}"


def test_no_stage_imports_another_stage() -> None:
    found = crossings()
    unexpected = {pair: where for pair, where in found.items() if pair not in KNOWN_PENDING}
    assert not unexpected, "stages import each other:\n" + "\n".join(
        line for where in unexpected.values() for line in where
    )


def test_known_pending_crossings_still_exist() -> None:
    # When a move lands, its pair leaves KNOWN_PENDING: the exception cannot outlive its reason.
    gone = KNOWN_PENDING - set(crossings())
    assert not gone, f"no longer crossing, remove from KNOWN_PENDING: {sorted(gone)}"


@pytest.mark.parametrize(
    ("module", "source", "stage"),
    [
        ("edge/amd.py", "from phoneagent.policy.call_rules import DISCLOSURE_CORE\n", "policy"),
        ("edge/sub/x.py", "def f():\n    from phoneagent.tts.engines.base import create_engine\n", "tts"),
        ("llm/x.py", "import phoneagent.records.summary\n", "records"),
        ("tts/sub/x.py", "from ...policy import live\n", "policy"),
        ("asr/x.py", "from phoneagent import llm\n", "llm"),
        ("runtime/x.py", "from phoneagent.edge import service\n", "edge"),
        ("agents/x.py", "from phoneagent.llm.domain.tool_schemas import TOOL_SCHEMAS\n", "llm"),
    ],
)
def test_the_checker_sees_every_form_of_import(tmp_path: Path, module: str, source: str, stage: str) -> None:
    root = tmp_path / "phoneagent"
    for top in (*STAGES, *BELOW_STAGES):
        (root / top).mkdir(parents=True)
        (root / top / "__init__.py").write_text("")
    (root / "llm" / "ok.py").write_text(
        "from phoneagent.runtime import bus\nfrom phoneagent.agents.agent import Agent\n"
        "from phoneagent.v1 import call_pb2\nfrom . import dialog\nimport numpy\n"
    )
    assert crossings(root) == {}, "allowed imports are not crossings"
    path = root / module
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    assert (module, stage) in crossings(root)
