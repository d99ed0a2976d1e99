"""Pagination cursors are opaque and tamper-evident: one a client did not get from this list
(edited, forged, or carried over from other filters) is a 422 naming `cursor`, never a 500."""

from __future__ import annotations

import base64

import orjson
import pytest

from tests.support.factories import new_member, signed_in

LISTS = [
    "/v1/users",
    "/v1/projects",
    "/v1/audit",
    "/v1/events",
    "/v1/keys",
    "/v1/webhooks",
    "/v1/roles",
    "/v1/organizations",
]


def _unsigned(payload) -> str:
    """A cursor in the shape an unsigned implementation would accept: base64 JSON."""
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


FORGED = [
    _unsigned(["-created_at", "not-a-date", "usr_x"]),
    _unsigned(["-created_at", {"a": 1}, "usr_x"]),
    _unsigned(["-created_at", "2026-01-01T00:00:00+00:00", ["x"]]),
    "not-base64-at-all!!",
    "." * 3,
    "",
]


@pytest.mark.parametrize("path", LISTS)
async def test_forged_cursors_are_422(client, path):
    owner = await signed_in(client)
    for cursor in FORGED:
        if not cursor:
            continue
        response = await client.get(path, headers=owner.headers, params={"cursor": cursor})
        assert response.status_code == 422, (path, cursor, response.text)
        error = response.json()["error"]
        assert error["code"] == "VALIDATION_ERROR"
        assert [(d["field"], d["code"]) for d in error["details"]] == [("cursor", "INVALID_VALUE")]


async def test_an_edited_cursor_is_422(client):
    owner = await signed_in(client)
    for _ in range(2):
        await new_member(client, owner, role="viewer")
    first = (await client.get("/v1/users", headers=owner.headers, params={"limit": 1})).json()
    encoded, signature = first["next_cursor"].split(".")
    payload = orjson.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    payload[1] = "2000-01-01T00:00:00+00:00"  # skip ahead: a valid value, not a signed one
    edited = f"{_unsigned(payload)}.{signature}"
    response = await client.get(
        "/v1/users", headers=owner.headers, params={"limit": 1, "cursor": edited}
    )
    assert response.status_code == 422, response.text
    # The cursor as given still works.
    response = await client.get(
        "/v1/users", headers=owner.headers, params={"limit": 1, "cursor": first["next_cursor"]}
    )
    assert response.status_code == 200, response.text


async def test_a_cursor_is_bound_to_its_filters_and_its_list(client):
    owner = await signed_in(client)
    for _ in range(2):
        await new_member(client, owner, role="viewer")
    params = {"limit": 1, "status": "active"}
    first = (await client.get("/v1/users", headers=owner.headers, params=params)).json()
    cursor = first["next_cursor"]
    assert cursor
    same = await client.get("/v1/users", headers=owner.headers, params={**params, "cursor": cursor})
    assert same.status_code == 200, same.text
    unfiltered = await client.get(
        "/v1/users", headers=owner.headers, params={"limit": 1, "cursor": cursor}
    )
    assert unfiltered.status_code == 422, unfiltered.text
    elsewhere = await client.get(
        "/v1/audit", headers=owner.headers, params={"limit": 1, "cursor": cursor}
    )
    assert elsewhere.status_code == 422, elsewhere.text
