"""Where the Smart Turn model comes from: taken out of a pipecat-ai wheel into the model cache
and sha256-verified; a wheel without it, or with other bytes, is refused with a clear error,
and without it nothing is fetched: the error says how to get it."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from phoneagent.asr import turn_model
from phoneagent.runtime.modelfiles import MissingModelError


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PA_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setattr(turn_model, "_installed", lambda: None)
    return tmp_path


def _wheel(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
    return path


def test_without_the_model_the_error_says_how_to_get_it(empty_cache: Path) -> None:
    with pytest.raises(MissingModelError, match="smart-turn-wheel"):
        turn_model.model_path()


def test_a_wheel_with_other_bytes_is_refused_and_leaves_nothing(empty_cache: Path) -> None:
    wheel = _wheel(empty_cache / "pipecat_ai.whl", turn_model.WHEEL_MEMBER, b"not a model")
    with pytest.raises(MissingModelError, match="sha256"):
        turn_model.extract_from_wheel(wheel)
    assert not turn_model.cached_path().exists()
    assert list(turn_model.cached_path().parent.iterdir()) == []


def test_a_wheel_without_the_model_is_refused(empty_cache: Path) -> None:
    wheel = _wheel(empty_cache / "other.whl", "pipecat/__init__.py", b"")
    with pytest.raises(MissingModelError, match="holds no Smart Turn"):
        turn_model.extract_from_wheel(wheel)
