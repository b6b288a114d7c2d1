"""OpenTelemetry tracing of every request, on with ``OTEL_TRACING=true`` (the ``tracing``
extra of the shop's distribution installs it).

Spans are created (sampled, or continuing the caller's ``traceparent``) and not exported
anywhere: what the shop shows with them is the exemplar that links each latency bucket of
``/metrics`` to the trace of a request in it (jewelry_monitoring_django.exemplars). Point an
OTLP exporter at your tracing backend to keep the traces too.
"""

from __future__ import annotations


def instrument() -> None:
    """Trace Django's requests (call before the WSGI application is built)."""
    from opentelemetry import trace
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    trace.set_tracer_provider(TracerProvider())
    DjangoInstrumentor().instrument()
