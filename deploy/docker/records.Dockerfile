# Records: call records, webhooks, post-call summaries, the gRPC control API, campaigns and the
# operator console. Build from the repository root:
#   docker build -f deploy/docker/records.Dockerfile -t ghcr.io/phone-agent/phone-agent-records:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm
ARG NODE_IMAGE=node:22.12.0-bookworm-slim

# The console's chart library (Chart.js) comes from its npm package; the Python image has no npm,
# so a Node stage fetches the tarball and the build stage checks it and copies the files it serves.
FROM ${NODE_IMAGE} AS charts
WORKDIR /charts
RUN npm pack chart.js@4.6.1 --silent && mv chart.js-4.6.1.tgz chart.js.tgz

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
COPY --from=charts /charts/chart.js.tgz /tmp/chart.js.tgz
# The policy extra brings Presidio and the spaCy English model that redact stored copies;
# loading it here proves the model is in the image (nothing is downloaded at run time).
RUN pip install ".[records,policy,otlp]" \
 && python -m phoneagent.records.console.vendor --tarball /tmp/chart.js.tgz \
 && rm /tmp/chart.js.tgz \
 && python -c "from phoneagent.runtime.redact import redact_transcript; assert redact_transcript('my name is Ann Lee') == 'my name is [NAME]'"

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app \
 && install -d -o 10001 -g 10001 /var/lib/phone-agent
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    PA_HTTP_HOST=0.0.0.0 PA_HTTP_PORT=8080 PA_GRPC_HOST=0.0.0.0 PA_GRPC_PORT=50051 \
    PA_CONSOLE_HOST=0.0.0.0 PA_CONSOLE_PORT=8470 \
    PA_RECORDS_DB=/var/lib/phone-agent/records.sqlite3
USER 10001:10001
EXPOSE 8080/tcp 50051/tcp 8470/tcp
# Docker and compose use this; Kubernetes uses the chart's startup/readiness/liveness probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PA_HTTP_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["phone-agent"]
CMD ["serve", "records"]
