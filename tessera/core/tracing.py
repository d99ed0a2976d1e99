"""OpenTelemetry tracing, off unless `TESSERA_TRACING` is `otlp` or `console`.

One server span per HTTP request (OpenTelemetry's ASGI middleware), named after the operation and
carrying the request id, so a trace and a log line can be found from each other. Where spans go
is set by OpenTelemetry's standard variables: `OTEL_EXPORTER_OTLP_ENDPOINT` (or
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_SCHEDULE_DELAY`. When tracing is off nothing is wrapped and no
OpenTelemetry code runs on the request path.
"""

from __future__ import annotations

import logging

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.core.request_context import request_id_if_any
from tessera.core.settings import Settings

log = logging.getLogger("tessera.tracing")

_provider = None  # one per process, shared by every app built in it


def _tracer_provider(settings: Settings):
    global _provider
    if _provider is None:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        if settings.tracing == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = resource.merge(Resource({SERVICE_NAME: "tessera"}))
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(exporter))  # flushed at exit
        _provider = provider
        log.info("tracing on: spans go to %s", settings.tracing)
    return _provider


class _NameSpans:
    """Inside the tracing middleware: names the request's server span after the operation and
    tags it with the request id, when the response starts (the route is known by then)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        from opentelemetry import trace

        span = trace.get_current_span()

        async def send_annotated(message: Message) -> None:
            if message["type"] == "http.response.start" and span.is_recording():
                routing = scope.get("extensions", {}).get("connexion_routing", {})
                operation = routing.get("operation_id")
                if operation:
                    span.update_name(f"{scope['method']} {operation}")
                    span.set_attribute("tessera.operation_id", operation)
                request_id = request_id_if_any() or Headers(raw=message["headers"]).get(
                    "x-request-id"
                )
                if request_id:
                    span.set_attribute("tessera.request_id", request_id)
            await send(message)

        await self.app(scope, receive, send_annotated)


def instrument(app: ASGIApp, settings: Settings) -> ASGIApp:
    """`app` wrapped in a server span per request when tracing is on; `app` itself when off."""
    if settings.tracing == "off":
        return app
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        _NameSpans(app),
        tracer_provider=_tracer_provider(settings),
        exclude_spans=["receive", "send"],  # one span per request, not one per ASGI message
    )
