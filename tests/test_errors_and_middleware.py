"""The platform layer through HTTP: envelopes, request ids, security headers, limits, CORS."""

from __future__ import annotations

import httpx
import pytest


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert error["request_id"] == response.headers["x-request-id"]
    assert isinstance(error["message"], str) and error["message"]
    return error


async def test_unknown_route_is_404_envelope(client):
    assert_envelope(await client.post("/nope"), 404, "RESOURCE_NOT_FOUND")


async def test_wrong_method_is_405_with_allow_from_the_spec(client):
    response = await client.delete("/health")
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET, HEAD"


async def test_unknown_query_parameter_is_rejected_per_field(client):
    error = assert_envelope(
        await client.get("/health", params={"verbose": "1"}), 422, "VALIDATION_ERROR"
    )
    assert error["details"] == [
        {
            "field": "verbose",
            "code": "UNKNOWN_PARAMETER",
            "message": "Unknown query parameter 'verbose'.",
        }
    ]


async def test_request_id_is_echoed_when_sane_and_replaced_otherwise(client):
    sane = await client.get("/health", headers={"X-Request-Id": "client-123.abc"})
    assert sane.headers["x-request-id"] == "client-123.abc"
    hostile = await client.get("/nope", headers={"X-Request-Id": "bad id\twith spaces"})
    assert hostile.headers["x-request-id"].startswith("req_")
    assert hostile.json()["error"]["request_id"] == hostile.headers["x-request-id"]


async def test_every_request_gets_a_distinct_generated_id(client):
    ids = {(await client.get("/health")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5


async def test_security_headers_on_api_responses(client):
    response = await client.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_docs_page_renders_swagger_ui_for_the_served_spec(client):
    response = await client.get("/docs/")
    assert response.status_code == 200
    assert "swagger-ui" in response.text
    assert "/openapi.json" in response.text
    assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_body_over_limit_is_413_before_reading_it(client):
    response = await client.post(
        "/health", content=b"x", headers={"Content-Length": str(10 * 1024 * 1024 + 1)}
    )
    assert_envelope(response, 413, "PAYLOAD_TOO_LARGE")


async def test_url_over_8kb_is_414(client):
    assert_envelope(await client.get("/health?" + "a" * 9000), 414, "BAD_REQUEST")


async def test_more_than_50_query_parameters_is_422(client):
    query = "&".join(f"p{i}=1" for i in range(51))
    error = assert_envelope(await client.get("/health?" + query), 422, "VALIDATION_ERROR")
    assert error["details"][0]["code"] == "TOO_MANY_PARAMETERS"


async def test_headers_over_32kb_are_431(client):
    headers = {f"X-Filler-{i}": "v" * 1000 for i in range(40)}
    assert_envelope(await client.get("/health", headers=headers), 431, "BAD_REQUEST")


async def test_unhandled_exception_is_500_without_internals(client, monkeypatch):
    from tessera.web import health

    def explode():
        raise RuntimeError("SELECT password_hash FROM users -- secret internals")

    monkeypatch.setattr(health, "package_version", explode)
    response = await client.get("/version")
    error = assert_envelope(response, 500, "INTERNAL_ERROR")
    assert "secret" not in response.text and "SELECT" not in response.text
    assert error["details"] == []


async def test_response_that_breaks_the_spec_is_never_sent(client, monkeypatch):
    from tessera.web import health

    async def wrong_shape():
        return {"status": "ok", "leaked_field": True}

    monkeypatch.setattr(health, "status", wrong_shape)
    response = await client.get("/status")
    assert_envelope(response, 500, "INTERNAL_ERROR")
    assert "leaked_field" not in response.text


@pytest.fixture
async def cors_client(test_env):
    from tessera.core.settings import Settings
    from tessera.web.app import create_app

    app = create_app(Settings(TESSERA_CORS_ORIGINS="https://app.example.com"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_cors_allows_only_listed_origins(cors_client):
    allowed = await cors_client.get("/health", headers={"Origin": "https://app.example.com"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "X-Request-Id" in allowed.headers["access-control-expose-headers"]
    denied = await cors_client.get("/health", headers={"Origin": "https://evil.example.net"})
    assert "access-control-allow-origin" not in denied.headers
    preflight = await cors_client.options(
        "/health",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    refused = await cors_client.options(
        "/v1/users",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "GET"},
    )
    error = assert_envelope(refused, 400, "BAD_REQUEST")
    assert "origin" in error["message"]
    assert "access-control-allow-origin" not in refused.headers


async def test_malformed_json_is_400_envelope(client):
    for body in (b'{"email": ', b'{"email": "\xff"}'):  # truncated; not UTF-8
        response = await client.post(
            "/v1/auth/login", content=body, headers={"Content-Type": "application/json"}
        )
        assert_envelope(response, 400, "BAD_REQUEST")


async def test_wrong_content_type_is_415_envelope(client):
    response = await client.post(
        "/v1/auth/login", content=b"email=a", headers={"Content-Type": "text/plain"}
    )
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_schema_violations_are_422_with_one_detail_per_field(client):
    response = await client.post("/v1/auth/login", json={"email": 5, "password": ["x"]})
    error = assert_envelope(response, 422, "VALIDATION_ERROR")
    assert sorted(d["field"] for d in error["details"]) == ["email", "password"]


async def test_missing_credentials_are_401_with_www_authenticate(client):
    response = await client.get("/v1/users/me")
    assert_envelope(response, 401, "AUTHENTICATION_FAILED")
    assert response.headers["www-authenticate"].startswith("Bearer")
