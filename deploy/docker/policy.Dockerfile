# Policy: the per-call compliance gate, dial approvals and the audit trail. Build from the repository root:
#   docker build -f deploy/docker/policy.Dockerfile -t ghcr.io/phone-agent/phone-agent-policy:0.1.0 .
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY services ./services
# The policy extra brings Presidio and the spaCy English model that redact stored copies;
# loading it here proves the model is in the image (nothing is downloaded at run time).
RUN pip install ".[policy,otlp]" \
 && python -c "from phoneagent.runtime.redact import redact_transcript; assert redact_transcript('my name is Ann Lee') == 'my name is [NAME]'"

FROM ${PYTHON_IMAGE}
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid app --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin app \
 && install -d -o 10001 -g 10001 /var/lib/phone-agent
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    XDG_CACHE_HOME=/tmp/.cache \
    PA_HTTP_HOST=0.0.0.0 PA_HTTP_PORT=8080 \
    PA_POLICY_DB=/var/lib/phone-agent/policy.sqlite3
USER 10001:10001
EXPOSE 8080/tcp
# Docker and compose use this; Kubernetes uses the chart's startup/readiness/liveness probes instead.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PA_HTTP_PORT', '8080'), timeout=3)"]
ENTRYPOINT ["phone-agent"]
CMD ["serve", "policy"]
