"""Stand-ins for ``torch`` (with a CUDA device) and the PyTorch ``kokoro`` package, so the
kokoro-torch engine runs without a GPU stack: ``KModel`` records the files and device it was
given, ``KPipeline`` yields one result per sentence whose ``audio`` is a tensor-like array
(0.05 s of tone per character at 24 kHz, shorter when faster). The ``stub_torch_kokoro``
fixture (tests/tts/conftest.py) installs them."""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

RATE = 24000


class FakeKModel:
    """Stands in for kokoro.KModel: records the files and device it was given."""

    built: list[dict[str, Any]] = []

    def __init__(self, repo_id: str, config: str, model: str) -> None:
        self.args = {"repo_id": repo_id, "config": config, "model": model}
        FakeKModel.built.append(self.args)

    def to(self, device: str) -> FakeKModel:
        self.args["device"] = device
        return self

    def eval(self) -> FakeKModel:
        return self


class FakeTensor:
    """The tensor methods the engine calls on a result's audio."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def detach(self) -> FakeTensor:
        return self

    def float(self) -> FakeTensor:
        return FakeTensor(self.array.astype(np.float32))

    def cpu(self) -> FakeTensor:
        return self

    def numpy(self) -> np.ndarray:
        return self.array


class FakeKPipeline:
    def __init__(self, lang_code: str, repo_id: str, model: FakeKModel) -> None:
        self.lang_code, self.model = lang_code, model

    def __call__(
        self, text: str, voice: Any = None, speed: float = 1.0, split_pattern: str | None = None
    ) -> Iterator[Any]:
        n = int(len(text) * 0.05 * RATE / speed)
        tone = 0.3 * np.sin(2 * np.pi * 220 * np.arange(n) / RATE)
        yield types.SimpleNamespace(graphemes=text, audio=FakeTensor(tone))


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = types.ModuleType("torch")
    torch.cuda = types.SimpleNamespace(is_available=lambda: True, empty_cache=lambda: None)  # type: ignore[attr-defined]
    torch.from_numpy = np.asarray  # type: ignore[attr-defined]
    torch.set_num_threads = lambda n: None  # type: ignore[attr-defined]
    torch.inference_mode = contextlib.nullcontext  # type: ignore[attr-defined]
    kokoro = types.ModuleType("kokoro")
    kokoro.KModel = FakeKModel  # type: ignore[attr-defined]
    kokoro.KPipeline = FakeKPipeline  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "kokoro", kokoro)
    FakeKModel.built = []
