"""The local stack's voice on CPU: Piper unless the environment names an engine."""

from __future__ import annotations

from phoneagent.runtime.stack import cpu_voice


def test_the_local_stack_speaks_with_piper_by_default() -> None:
    env: dict[str, str] = {}
    cpu_voice(env)
    assert env == {"PA_TTS_ENGINE": "piper", "PA_TTS_ENGINES": "piper"}


def test_an_engine_the_environment_names_is_kept() -> None:
    env = {"PA_TTS_ENGINE": "kokoro"}
    cpu_voice(env)
    assert env == {"PA_TTS_ENGINE": "kokoro"}  # PA_TTS_ENGINES keeps its default (both engines)
