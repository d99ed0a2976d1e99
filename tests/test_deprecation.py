"""Deprecation headers come from the contract: mark an operation (or use a deprecated parameter)
and the responses say so, with no handler code involved."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from tessera.web import deprecation
from tessera.web.contract import Operation, get_contract
from tests.support.factories import signed_in

SUNSET_HTTP_DATE = "Tue, 01 Jun 2027 00:00:00 GMT"
DEPRECATED_AT_UNIX = 1780272000  # 2026-06-01T00:00:00Z


@pytest.fixture
def get_me_deprecated(monkeypatch):
    """`get_me` marked deprecated in the loaded contract, as a spec edit would mark it."""
    spec = get_contract().operations["get_me"].spec
    monkeypatch.setitem(spec, "deprecated", True)
    monkeypatch.setitem(spec, "x-deprecated-at", "2026-06-01")
    monkeypatch.setitem(spec, "x-sunset", "2027-06-01T00:00:00Z")
    return spec


async def test_deprecated_operation_answers_with_deprecation_sunset_and_link(
    client, get_me_deprecated
):
    account = await signed_in(client)
    response = await client.get("/v1/users/me", headers=account.headers)
    assert response.status_code == 200
    assert response.headers["Deprecation"] == f"@{DEPRECATED_AT_UNIX}"
    assert response.headers["Sunset"] == SUNSET_HTTP_DATE
    assert response.headers["Link"] == (
        '</redoc#tag/users/operation/get_me>; rel="deprecation"; type="text/html"'
    )


async def test_error_responses_of_a_deprecated_operation_carry_the_headers_too(
    client, get_me_deprecated
):
    response = await client.get("/v1/users/me")
    assert response.status_code == 401
    assert response.headers["Deprecation"] == f"@{DEPRECATED_AT_UNIX}"
    assert response.headers["Sunset"] == SUNSET_HTTP_DATE


async def test_without_dates_deprecation_is_true_and_no_sunset_is_promised(client, monkeypatch):
    spec = get_contract().operations["get_me"].spec
    monkeypatch.setitem(spec, "deprecated", True)
    monkeypatch.setitem(spec, "x-deprecation-link", "https://docs.example.com/migrate-me")
    account = await signed_in(client)
    response = await client.get("/v1/users/me", headers=account.headers)
    assert response.headers["Deprecation"] == "true"
    assert "Sunset" not in response.headers
    assert response.headers["Link"].startswith("<https://docs.example.com/migrate-me>;")


async def test_live_operations_and_unmatched_paths_have_no_deprecation_headers(
    client, get_me_deprecated
):
    account = await signed_in(client)
    sessions = await client.get("/v1/users/me/sessions?limit=5", headers=account.headers)
    missing = await client.get("/v1/no-such-thing", headers=account.headers)
    assert sessions.status_code == 200 and missing.status_code == 404
    for response in (sessions, missing):
        assert "Deprecation" not in response.headers
        assert "Sunset" not in response.headers


async def test_the_deprecated_offset_parameter_is_announced_only_when_used(client):
    assert get_contract().document["components"]["parameters"]["Offset"]["deprecated"] is True
    account = await signed_in(client)
    with_offset = await client.get("/v1/users/me/sessions?offset=0", headers=account.headers)
    with_cursor = await client.get("/v1/users/me/sessions?limit=1", headers=account.headers)
    assert with_offset.status_code == 200 and with_cursor.status_code == 200
    assert with_offset.headers["Deprecation"] == "true"
    assert "Sunset" not in with_offset.headers
    assert "/redoc#tag/users/operation/list_my_sessions" in with_offset.headers["Link"]
    assert "Deprecation" not in with_cursor.headers


def test_the_shipped_contract_passes_the_deprecation_check():
    deprecation.check(get_contract())


@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        ({"deprecated": True, "x-sunset": "next spring"}, "not an RFC 3339 date"),
        ({"x-sunset": "2027-06-01"}, "need deprecated: true"),
        (
            {"deprecated": True, "x-deprecated-at": "2027-01-01", "x-sunset": "2027-03-01"},
            "six months",
        ),
    ],
)
def test_bad_deprecation_metadata_is_refused_at_start_up(extensions, message):
    contract = copy.deepcopy(get_contract())
    contract.operations["get_me"].spec.update(extensions)
    with pytest.raises(deprecation.DeprecationSpecError, match=message):
        deprecation.check(contract)


def test_unquoted_yaml_dates_are_accepted():
    """YAML reads `x-sunset: 2027-06-01` as a date, not a string."""
    live = get_contract().operations["get_me"]
    spec = {**live.spec, "deprecated": True, "x-sunset": dt.date(2027, 6, 1)}
    operation = Operation(live.operation_id, live.method, live.path, spec)
    assert deprecation.operation_headers(operation)["Sunset"] == SUNSET_HTTP_DATE
