# Edge: SIP/RTP and WebRTC media. SIP and RTP bind every interface of the container, so the edge
# needs the address callers reach it on: docker run -e PA_SIP_PUBLIC_ADDRESS=<host IPv4> (the chart
# sets it from the pod or node IP, or edge.sip.publicAddress), and who may call in: by default only
# loopback, so set -e PA_SIP_INBOUND_TRUNKS='[{"name": "carrier", "sources": ["<CIDR>"]}]'. Build from
# the repository root:
#   docker build -f deploy/docker/edge.Dockerfile -t ghcr.io/phone-agent/phone-agent-edge:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
# No speech engine here: warm transfer asks the TTS service over the bus for its summary.
RUN pip install ".[edge,otlp,s3]"

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    PA_HTTP_HOST=0.0.0.0 PA_HTTP_PORT=8080 PA_SIP_HOST=0.0.0.0 PA_SIP_PORT=5060 PA_SIP_PORT_FALLBACK=false \
    PA_RTP_PORT_MIN=30000 PA_RTP_PORT_MAX=30099
USER 10001:10001
EXPOSE 8080/tcp 5060/udp 5060/tcp 30000-30099/udp
# Docker and compose use this; Kubernetes uses the chart's startup/readiness/liveness probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PA_HTTP_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["phone-agent"]
CMD ["serve", "edge"]
