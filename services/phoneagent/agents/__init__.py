"""Example agent definitions (YAML) and their knowledge documents."""

from pathlib import Path

AGENTS_DIR = Path(__file__).resolve().parent


def example_agent_path(name: str = "dental_clinic") -> Path:
    return AGENTS_DIR / f"{name}.yaml"
