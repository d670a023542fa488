"""TtsService start-up without a bus: which engines it builds, with which files, and which voice
a call gets."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.settings import CommonSettings, load
from phoneagent.tts import models
from phoneagent.tts.service import TtsService
from phoneagent.tts.settings import TtsSettings
from support.kokoro_torch_standin import FakeKModel


def service(environ: dict[str, str]) -> TtsService:
    common = load(CommonSettings, {}, nats_url="nats://127.0.0.1:4222")
    return TtsService(common, load(TtsSettings, environ))


@pytest.mark.slow  # reads the Kokoro voices file (built by the model step)
async def test_setup_builds_kokoro_torch_from_the_configured_files(
    stub_torch_kokoro: None, tmp_path: Path
) -> None:
    config, weights = tmp_path / "config.json", tmp_path / "kokoro.pth"
    config.write_text("{}")
    weights.write_bytes(b"\0")
    svc = service(
        {
            "PA_TTS_ENGINES": "kokoro-torch",
            "PA_TTS_ENGINE": "kokoro-torch",  # as the CUDA image sets it
            "PA_TTS_KOKORO_CONFIG": str(config),
            "PA_TTS_KOKORO_WEIGHTS": str(weights),
            "PA_TTS_PRERENDER": "false",
        }
    )
    await svc.setup()
    try:
        assert list(svc.engines) == ["kokoro-torch"]
        assert FakeKModel.built == [
            {"repo_id": "hexgrad/Kokoro-82M", "config": str(config), "model": str(weights), "device": "cuda"}
        ]
        engine, voice = svc.voice_for_call()
        assert engine.name == "kokoro-torch" and voice == "af_heart"  # the demo agent's voice
    finally:
        await svc.teardown()


async def test_kokoro_torch_files_default_under_the_model_dir(
    stub_torch_kokoro: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PA_MODEL_DIR", str(tmp_path))
    svc = service(
        {"PA_TTS_ENGINES": "kokoro-torch", "PA_TTS_ENGINE": "kokoro-torch", "PA_TTS_KOKORO_DEVICE": "cpu"}
    )
    opts = svc.engine_options("kokoro-torch")
    assert opts["config_path"] == tmp_path / "kokoro" / models.KOKORO_TORCH_CONFIG_FILE
    assert opts["model_path"] == tmp_path / "kokoro" / "kokoro-v1_0.pth"
    assert opts["device"] == "cpu"
    with pytest.raises(PhoneAgentError) as err:  # no files there: the error names the file and variable
        await svc.setup()
    assert err.value.kind is ErrorKind.MODEL_UNAVAILABLE
    assert "config.json" in err.value.message and "PA_TTS_KOKORO_CONFIG" in err.value.message


def test_a_bad_kokoro_device_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="PA_TTS_KOKORO_DEVICE"):
        load(TtsSettings, {"PA_TTS_KOKORO_DEVICE": "tpu"})


class FakeEngine:
    """An engine that only knows its name and voices: voice choice needs nothing more."""

    native_rate = 24000

    def __init__(self, name: str, voices: list[str]) -> None:
        self.name, self._voices = name, voices

    def load(self) -> None:
        pass

    def voices(self) -> list[str]:
        return self._voices

    def close(self) -> None:
        pass


VOICES = {
    "kokoro": ["af_heart", "af_bella", "bf_emma"],
    "kokoro-torch": ["af_heart", "af_bella", "bf_emma"],
    "piper": ["en_US-joe-medium"],
}


async def started_with_agent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: str, voice: str, **env: str
) -> TtsService:
    agents = Path(__file__).parents[2] / "services/phoneagent/agents"
    demo = (agents / "dental_clinic.yaml").read_text()
    (tmp_path / "knowledge").symlink_to(agents / "knowledge")  # the demo agent's documents
    assert "voice:\n  engine: kokoro\n  voice: af_heart" in demo
    agent = tmp_path / "agent.yaml"
    agent.write_text(
        demo.replace(
            "voice:\n  engine: kokoro\n  voice: af_heart", f"voice:\n  engine: {engine}\n  voice: {voice}"
        )
    )
    monkeypatch.setattr(
        "phoneagent.tts.service.create_engine", lambda name, **_: FakeEngine(name, VOICES[name])
    )
    common = load(CommonSettings, {}, nats_url="nats://127.0.0.1:4222", agent_file=str(agent))
    svc = TtsService(common, load(TtsSettings, {"PA_TTS_PRERENDER": "false", **env}))
    await svc.setup()
    return svc


@pytest.mark.parametrize(
    ("engine", "voice", "env", "chosen"),
    [
        # the agent file chooses engine and voice
        ("kokoro", "bf_emma", {}, ("kokoro", "bf_emma")),
        ("piper", "en_US-joe-medium", {}, ("piper", "en_US-joe-medium")),
        # PA_TTS_ENGINE overrides the engine; the file's voice stays when that engine has it
        (
            "kokoro",
            "bf_emma",
            {"PA_TTS_ENGINES": "kokoro-torch", "PA_TTS_ENGINE": "kokoro-torch"},
            ("kokoro-torch", "bf_emma"),
        ),
        # ... else the engine's default voice
        ("kokoro", "bf_emma", {"PA_TTS_ENGINE": "piper"}, ("piper", "en_US-joe-medium")),
        # PA_TTS_VOICE overrides the voice
        ("kokoro", "bf_emma", {"PA_TTS_VOICE": "af_bella"}, ("kokoro", "af_bella")),
    ],
)
async def test_the_agent_file_chooses_engine_and_voice(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    engine: str,
    voice: str,
    env: dict[str, str],
    chosen: tuple[str, str],
) -> None:
    svc = await started_with_agent(tmp_path, monkeypatch, engine, voice, **env)
    got, got_voice = svc.voice_for_call()
    assert (got.name, got_voice) == chosen


async def test_an_agent_engine_that_is_not_loaded_fails_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(PhoneAgentError, match="PA_TTS_ENGINES"):
        await started_with_agent(tmp_path, monkeypatch, "kokoro", "af_heart", PA_TTS_ENGINES="piper")


async def test_teardown_stops_prompt_rendering_before_closing_the_engines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendering = threading.Event()
    release = threading.Event()
    events: list[str] = []

    class SlowEngine(FakeEngine):
        def synthesize(self, text: str, voice: str, speed: float = 1.0) -> Any:
            events.append("synthesize")
            rendering.set()
            release.wait(10)
            yield np.zeros(2400, dtype=np.float32)

        def close(self) -> None:
            events.append("close")

    monkeypatch.setattr(
        "phoneagent.tts.service.create_engine", lambda name, **_: SlowEngine(name, VOICES[name])
    )
    common = load(CommonSettings, {}, nats_url="nats://127.0.0.1:4222")
    svc = TtsService(
        common, load(TtsSettings, {"PA_TTS_ENGINES": "kokoro", "PA_TTS_PROMPT_DIR": str(tmp_path)})
    )
    await svc.setup()  # ready at once: the prompts render in the background
    (task,) = svc.prerendering.values()
    assert not task.done()
    assert await asyncio.to_thread(rendering.wait, 10)
    try:
        await svc.teardown()  # returns while the first sentence is still being synthesised
        assert task.cancelled() and events == ["synthesize", "close"]
    finally:
        release.set()
