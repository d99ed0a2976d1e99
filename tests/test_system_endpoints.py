"""Health, readiness, status, version, metrics and the served contract."""

from __future__ import annotations

import asyncio

import orjson
import yaml

from tessera.web.contract import SPEC_PATH


async def test_health_and_liveness(client):
    for path in ("/health", "/health/live"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"data": {"status": "ok"}}


async def test_readiness_checks_the_database(client):
    response = await client.get("/health/ready")
    assert response.status_code == 200
    checks = response.json()["data"]["checks"]
    assert [c["name"] for c in checks] == ["database"]
    assert checks[0]["status"] == "ok" and checks[0]["latency_ms"] >= 0


async def test_readiness_is_503_naming_the_failing_dependency(client, monkeypatch):
    from tessera.core.settings import Settings
    from tessera.web import health

    broken = Settings(REDIS_URL="redis://127.0.0.1:1/0", TESSERA_ENV="test")
    monkeypatch.setattr(health, "get_settings", lambda: broken)
    response = await client.get("/health/ready")
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "SERVICE_UNAVAILABLE"
    assert [d["field"] for d in error["details"]] == ["redis"]
    assert error["request_id"] == response.headers["x-request-id"]


async def test_status_reports_uptime_dependencies_and_worker_heartbeat(client):
    for _ in range(50):  # the in-process worker records the startup heartbeat
        data = (await client.get("/status")).json()["data"]
        if data["queue"]["last_worker_heartbeat_at"]:
            break
        await asyncio.sleep(0.1)
    assert data["status"] == "ok"
    assert data["environment"] == "test"
    assert data["uptime_seconds"] >= 0
    assert data["queue"]["backend"] == "in-process"
    assert data["queue"]["last_worker_heartbeat_at"].endswith("Z")


async def test_version(client):
    data = (await client.get("/version")).json()["data"]
    assert data["version"] == yaml.safe_load(SPEC_PATH.read_text())["info"]["version"]
    assert data["api_version"] == "v1"


async def test_metrics_count_requests_by_operation_and_status(client):
    await client.get("/health")
    await client.get("/nope")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'tessera_http_requests_total{method="GET",operation="get_health",status="200"}' in text
    assert 'operation="unmatched",status="404"' in text
    assert "tessera_http_request_duration_seconds_bucket" in text


async def test_served_spec_is_the_bundle_with_refs_kept(client):
    as_yaml = await client.get("/openapi.yaml")
    assert as_yaml.content == SPEC_PATH.read_bytes()
    as_json = await client.get("/openapi.json")
    document = orjson.loads(as_json.content)
    assert document == yaml.safe_load(SPEC_PATH.read_text())
    schema = document["paths"]["/health"]["get"]["responses"]["200"]["content"]["application/json"]
    assert schema["schema"] == {"$ref": "#/components/schemas/HealthResponse"}
