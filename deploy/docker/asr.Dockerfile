# ASR on CPU: faster-whisper with Whisper weights from the [asr] extra, assembled at build time
# into /opt/phone-agent/models (nothing is fetched at run time). Build from the repository root:
#   docker build -f deploy/docker/asr.Dockerfile -t ghcr.io/phone-agent/phone-agent-asr:0.1.0 .
# Add the multilingual base model (PA_ASR_MODEL=base) with
#   --build-arg ASR_EXTRAS=asr,asr-base,otlp --build-arg "ASR_MODELS=tiny.en base".
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG ASR_EXTRAS=asr,otlp
# Whisper models resolved (assembled into PA_MODEL_DIR where split, sha256-verified) at build time;
# the end-of-turn model (Smart Turn v3.2) is taken from the pipecat-ai wheel, fetched alone by pip.
ARG ASR_MODELS=tiny.en
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PA_MODEL_DIR=/opt/phone-agent/models
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
RUN pip install ".[${ASR_EXTRAS}]" \
 && mkdir -p "$PA_MODEL_DIR" \
 && python -m phoneagent.asr.models ${ASR_MODELS} \
 && pip download --no-deps -d /tmp/wheels "pipecat-ai==1.14.0" \
 && python -m phoneagent.asr.models --smart-turn-wheel /tmp/wheels/pipecat_ai-1.14.0-py3-none-any.whl \
 && rm -rf /tmp/wheels

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/phone-agent/models /opt/phone-agent/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/.cache HF_HUB_OFFLINE=1 \
    PA_MODEL_DIR=/opt/phone-agent/models PA_HTTP_HOST=0.0.0.0 PA_HTTP_PORT=8080
USER 10001:10001
EXPOSE 8080/tcp
# Docker and compose use this; Kubernetes uses the chart's startup/readiness/liveness probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PA_HTTP_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["phone-agent"]
CMD ["serve", "asr"]
