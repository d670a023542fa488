"""OpenTelemetry tracing with W3C trace context carried in NATS headers.

Traces are per turn (end of speech -> final transcript -> reply -> first audio), not per
20 ms frame: injecting a header costs ~0.1 ms, which per frame would be real overhead.
Export is OTLP/gRPC when ``PA_OTLP_ENDPOINT`` is set; otherwise spans are created (so
context still propagates) but not exported.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def setup(service: str, replica: str, otlp_endpoint: str = "", exporter: SpanExporter | None = None) -> None:
    """Install the tracer provider for this process (idempotent)."""
    global _provider
    if _provider is not None:
        return
    resource = Resource.create({"service.name": f"phone-agent-{service}", "service.instance.id": replica})
    provider = TracerProvider(resource=resource)
    if exporter is None and otlp_endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError:
            log.warning("otlp exporter not installed; install phone-agent[otlp]")
        else:
            exporter = OTLPSpanExporter(endpoint=otlp_endpoint, insecure=True)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider


def shutdown() -> None:
    if _provider is not None:
        _provider.shutdown()


def tracer(name: str = "phoneagent") -> trace.Tracer:
    return trace.get_tracer(name)


def inject(headers: dict[str, str]) -> dict[str, str]:
    """Write the current span's ``traceparent`` (and ``tracestate``) into NATS headers."""
    _propagator.inject(headers)
    return headers


def extract(headers: dict[str, str] | None) -> otel_context.Context:
    return _propagator.extract(headers or {})


@contextmanager
def span_from(headers: dict[str, str] | None, name: str, **attributes: Any) -> Iterator[trace.Span]:
    """A span that continues the trace carried in ``headers`` (if any)."""
    ctx = extract(headers)
    with tracer().start_as_current_span(name, context=ctx, attributes=attributes) as span:
        yield span


def start_child(headers: dict[str, str] | None, name: str, **attributes: Any) -> trace.Span | None:
    """A span continuing the trace in ``headers``, or None when they carry none.

    Not made current: the caller ends it (e.g. when the first audio of a turn goes out) and
    passes it on with :func:`headers_for`. For hops that see many messages per turn, only the
    one message that carries ``traceparent`` starts a span.
    """
    if not headers or "traceparent" not in headers:
        return None
    return tracer().start_span(name, context=extract(headers), attributes=attributes)


def headers_for(span: trace.Span) -> dict[str, str]:
    """NATS headers that make the receiver's spans children of ``span``."""
    out: dict[str, str] = {}
    _propagator.inject(out, context=trace.set_span_in_context(span))
    return out


@contextmanager
def continue_trace(
    headers: dict[str, str] | None, name: str, **attributes: Any
) -> Iterator[trace.Span | None]:
    """Like :func:`span_from`, but only when ``headers`` carry a trace: a hop forwarding one
    message of a turn joins the turn's trace, and the other messages create no span."""
    if not headers or "traceparent" not in headers:
        yield None
        return
    with span_from(headers, name, **attributes) as span:
        yield span
