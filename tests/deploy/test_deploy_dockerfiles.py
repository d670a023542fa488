"""Static checks of the service Dockerfiles (no Docker engine is needed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deploy_chart_support import DOCKER, REPO, SERVICES
from phoneagent.edge.transfer import WarmTransferConfig
from phoneagent.tts import models as tts_models

CUDA_SERVICES = ("asr", "llm", "tts")
FILES = [DOCKER / f"{s}.Dockerfile" for s in SERVICES] + [
    DOCKER / f"{s}.cuda.Dockerfile" for s in CUDA_SERVICES
]


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _service(path: Path) -> str:
    return path.name.split(".")[0]


def test_every_service_has_an_image_and_model_services_a_cuda_variant() -> None:
    assert sorted(p.name for p in DOCKER.glob("*.Dockerfile")) == sorted(p.name for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_dockerfile_is_multi_stage_slim_pinned_and_non_root(path: Path) -> None:
    ins = _instructions(path)
    args = dict(a.split("=", 1) for kind, a in ins if kind == "ARG" and "=" in a)
    bases = [a.split()[0] for kind, a in ins if kind == "FROM"]
    assert len(bases) >= 2, "build stage plus a runtime stage"
    for base in bases:
        ref = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], base)
        assert ":" in ref and not ref.endswith(":latest"), ref
        assert "slim" in ref
    users = [a for kind, a in ins if kind == "USER"]
    assert users, "the runtime stage must drop root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) > 0
    assert ins.index(("USER", users[-1])) > max(i for i, (kind, _) in enumerate(ins) if kind == "FROM")
    assert any(kind == "HEALTHCHECK" and "/healthz" in a for kind, a in ins)
    assert ("ENTRYPOINT", '["phone-agent"]') in ins
    assert ("CMD", f'["serve", "{_service(path)}"]') in ins


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_dockerfile_copies_only_existing_sources(path: Path) -> None:
    for kind, a in _instructions(path):
        if kind == "COPY" and not a.startswith("--from"):
            for src in a.split()[:-1]:
                if src != "README.md":  # the project README, written with the top-level docs
                    assert (REPO / src).exists(), src


@pytest.mark.parametrize("path", [p for p in FILES if _service(p) in CUDA_SERVICES], ids=lambda p: p.name)
def test_model_images_bring_weights_at_build_time_and_stay_offline(path: Path) -> None:
    text = path.read_text()
    assert "PA_MODEL_DIR=/opt/phone-agent/models" in text
    assert "COPY --from=build /opt/phone-agent/models /opt/phone-agent/models" in text
    if ".cuda." in path.name:
        assert "HF_HUB_OFFLINE=1" in text and "NVIDIA_VISIBLE_DEVICES" in text
    else:
        assert re.search(r"python -m phoneagent\.(asr\.models|tts\.assemble|llm\.assemble)", text)


def _build_args(path: Path) -> dict[str, str]:
    return dict(a.split("=", 1) for kind, a in _instructions(path) if kind == "ARG" and "=" in a)


def _pip_extras(path: Path) -> set[str]:
    """Extras of the project installed by `pip install ".[...]"` (build-argument defaults filled in)."""
    args = _build_args(path)
    out: set[str] = set()
    for kind, a in _instructions(path):
        if kind == "RUN":
            for spec in re.findall(r'pip install "\.\[([^\]]+)\]"', a):
                spec = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], spec)
                out |= {e.strip() for e in spec.split(",")}
    return out


def test_edge_image_carries_the_engine_warm_transfer_speaks_with() -> None:
    # The summary for the human agent is rendered inside the edge process (edge/transfer.py).
    engine = WarmTransferConfig().tts_engine
    extra = {"piper": tts_models.PIPER_EXTRA}[engine]
    edge = DOCKER / "edge.Dockerfile"
    assert extra in _pip_extras(edge)
    runs = " ".join(a for kind, a in _instructions(edge) if kind == "RUN")
    assert "python -m phoneagent.tts.assemble --skip-kokoro" in runs, "verify the voice at build time"
    assert f"SummaryVoice('{engine}').render(" in runs, "render a summary at build time"
