"""OpenTelemetry tracing, switched on by settings: a live server exports one span per request over
OTLP/HTTP to a collector on 127.0.0.1, named after the operation and carrying the request id."""

from __future__ import annotations

import time

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tessera.core import tracing
from tessera.core.settings import Settings
from tests.support.receiver import Receiver
from tests.support.services import ServerProcess


def _spans(bodies: list[bytes]) -> list[tuple[str, dict[str, str]]]:
    found = []
    for body in bodies:
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                for span in scope.spans:
                    attributes = {a.key: a.value.string_value for a in span.attributes}
                    found.append((span.name, attributes))
    return found


def test_a_traced_request_exports_a_span_with_operation_and_request_id(test_env, tmp_path):
    with Receiver() as collector:
        env = {
            **test_env,
            "TESSERA_TRACING": "otlp",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": collector.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s instead of 5 s
            "OTEL_SERVICE_NAME": "tessera-test",
        }
        server = ServerProcess(env, tmp_path / "server.log").start()
        try:
            answered = httpx.get(server.base_url + "/version", headers={"X-Request-Id": "trace-1"})
            assert answered.status_code == 200
            deadline = time.monotonic() + 15
            spans: list = []
            while time.monotonic() < deadline:
                spans = _spans([body for _, body in collector.received])
                if any(a.get("tessera.request_id") == "trace-1" for _, a in spans):
                    break
                time.sleep(0.1)
        finally:
            log = server.stop()
    traced = [(name, a) for name, a in spans if a.get("tessera.request_id") == "trace-1"]
    assert len(traced) == 1, (spans, log[-2000:])
    name, attributes = traced[0]
    assert name == "GET get_version"
    assert attributes["tessera.operation_id"] == "get_version"
    assert collector.received[0][0]["content-type"] == "application/x-protobuf"
    resource = ExportTraceServiceRequest.FromString(collector.received[0][1]).resource_spans[0]
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "tessera-test"


def test_tracing_is_off_by_default_and_then_wraps_nothing():
    app = object()
    assert Settings().tracing == "off"
    assert tracing.instrument(app, Settings(TESSERA_TRACING="off")) is app
