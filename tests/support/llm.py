"""Helpers for the LLM tests: ``needs``, the skip-or-fail mark for what a real-model test requires."""

from __future__ import annotations

import importlib.util
import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def needs(*modules: str, what: str) -> pytest.MarkDecorator:
    """Skip when one of ``modules`` is missing, except in CI (``CI=true``): there a broken install
    of a real engine or model must fail the run, not pass it green by skipping the real-model tests."""
    missing = any(importlib.util.find_spec(m) is None for m in modules)
    return pytest.mark.skipif(missing and not in_ci(), reason=f"{what} not installed")
