"""TTS service settings (environment variables, validated at start)."""

from __future__ import annotations

import dataclasses
from typing import Any

from phoneagent.runtime.settings import env, positive
from phoneagent.tts.engines.base import engine_options


@dataclasses.dataclass(frozen=True)
class TtsSettings:
    engines: list[str] = env(
        "PA_TTS_ENGINES",
        ["kokoro", "piper"],
        doc="Engines to load: kokoro (natural), piper (lowest latency), kokoro-torch (GPU)",
    )
    engine: str = env("PA_TTS_ENGINE", "", doc="Engine for every call; empty = the agent file's voice.engine")
    voice: str = env("PA_TTS_VOICE", "", doc="Voice for every call; empty = the agent file's voice.voice")
    sample_rate: int = env("PA_TTS_RATE", 8000, doc="Speech rate when the edge gives none (8000 or 16000)")
    threads: int = env("PA_TTS_THREADS", 1, check=positive, doc="Inference threads per engine")
    speed: float = env("PA_TTS_SPEED", 1.0, check=positive, doc="Speaking rate")
    kokoro_config: str = env(
        "PA_TTS_KOKORO_CONFIG", "", doc="kokoro-torch config.json; empty = PA_MODEL_DIR/kokoro/config.json"
    )
    kokoro_weights: str = env(
        "PA_TTS_KOKORO_WEIGHTS",
        "",
        doc="kokoro-torch weights (.pth); empty = PA_MODEL_DIR/kokoro/kokoro-v1_0.pth",
    )
    kokoro_device: str = env("PA_TTS_KOKORO_DEVICE", "cuda", doc="Torch device for kokoro-torch: cuda or cpu")
    prerender: bool = env(
        "PA_TTS_PRERENDER",
        True,
        doc="Render the greeting (with the AI disclosure), recording and transfer words at start-up",
    )
    prompt_dir: str = env(
        "PA_TTS_PROMPT_DIR", "", doc="Directory of rendered prompts; empty = PA_MODEL_DIR/tts-prompts"
    )
    disclosure_addition: str = env(
        "PA_DISCLOSURE_ADDITION",
        "",
        doc="Policy's addition to the AI disclosure (set it as for policy, so the greeting is pre-rendered)",
    )

    def validate(self) -> list[str]:
        problems = []
        if self.sample_rate not in (8000, 16000):
            problems.append(f"PA_TTS_RATE={self.sample_rate}: must be 8000 or 16000")
        if not self.engines:
            problems.append("PA_TTS_ENGINES: name at least one engine")
        if self.engine and self.engine not in self.engines:
            problems.append(f"PA_TTS_ENGINE={self.engine!r}: must be one of PA_TTS_ENGINES")
        if self.kokoro_device not in ("cuda", "cpu") and not self.kokoro_device.startswith("cuda:"):
            problems.append(f"PA_TTS_KOKORO_DEVICE={self.kokoro_device!r}: must be cuda, cuda:N or cpu")
        return problems

    def engine_options(self, name: str) -> dict[str, Any]:
        """Constructor options for engine ``name``, as the service and the benchmark build it."""
        return engine_options(name, self)
