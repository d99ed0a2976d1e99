"""How request bodies are read: chunked bodies, media types, ambiguous JSON."""

from __future__ import annotations

import orjson

from tests.support.factories import signed_in


async def _chunks(*parts: bytes):
    for part in parts:
        yield part


async def test_a_chunked_body_is_read_like_any_other(client):
    owner = await signed_in(client)
    response = await client.post(
        "/v1/projects",
        headers={**owner.headers, "Content-Type": "application/json"},
        content=_chunks(b'{"tit', b'le": "Chunked"}'),
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 201, response.text
    assert response.json()["data"]["title"] == "Chunked"


async def test_a_chunked_body_over_the_limit_is_413_counted_on_the_bytes(client):
    owner = await signed_in(client)
    megabyte = b" " * (1024 * 1024)
    response = await client.post(
        "/v1/projects",
        headers={**owner.headers, "Content-Type": "application/json"},
        content=_chunks(b'{"title": "x"', *[megabyte] * 11, b"}"),
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    listed = (await client.get("/v1/projects", headers=owner.headers)).json()
    assert listed["total"] == 0
    # Just under the limit is accepted.
    response = await client.post(
        "/v1/projects",
        headers={**owner.headers, "Content-Type": "application/json"},
        content=_chunks(b'{"title": "x"', *[megabyte] * 9, b"}"),
    )
    assert response.status_code == 201, response.text


async def test_an_empty_chunked_body_is_a_missing_body(client):
    owner = await signed_in(client)
    response = await client.post(
        "/v1/projects",
        headers={**owner.headers, "Content-Type": "application/json"},
        content=_chunks(b""),
    )
    assert response.status_code == 400, response.text
    assert orjson.loads(response.content)["error"]["code"] == "BAD_REQUEST"


async def test_media_types_are_case_insensitive(client):
    owner = await signed_in(client)
    for content_type in (
        "Application/JSON",
        "APPLICATION/JSON; CHARSET=UTF-8",
        "application/json;charset=utf-8",
    ):
        response = await client.post(
            "/v1/projects",
            headers={**owner.headers, "Content-Type": content_type},
            content=b'{"title": "Cased"}',
        )
        assert response.status_code == 201, (content_type, response.text)
    # The body is still validated whatever the case of its type.
    response = await client.post(
        "/v1/projects",
        headers={**owner.headers, "Content-Type": "Application/JSON"},
        content=b'{"title": 5}',
    )
    assert response.status_code == 422, response.text


async def test_repeated_keys_are_refused_and_change_nothing(client):
    owner = await signed_in(client)
    headers = {**owner.headers, "Content-Type": "application/json"}
    for body in (
        b'{"title": "a", "title": "b"}',
        b'{"title": "a", "status": "active", "status": "archived"}',
    ):
        response = await client.post("/v1/projects", headers=headers, content=body)
        assert response.status_code == 422, response.text
        details = response.json()["error"]["details"]
        assert [d["code"] for d in details] == ["DUPLICATE_KEY"], details
    assert (await client.get("/v1/projects", headers=owner.headers)).json()["total"] == 0
    # A colon inside a value is not a repeated key.
    response = await client.post("/v1/projects", headers=headers, content=b'{"title": "a: b"}')
    assert response.status_code == 201, response.text


async def test_repeated_scalar_query_parameters_are_refused(client):
    owner = await signed_in(client)
    response = await client.get("/v1/projects?limit=1&limit=2", headers=owner.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"] == [
        {"field": "limit", "code": "REPEATED_PARAMETER", "message": "Give this parameter once."}
    ]
    assert (await client.get("/v1/projects?limit=1", headers=owner.headers)).status_code == 200


async def test_validation_messages_are_short_and_written_for_people(client):
    owner = await signed_in(client)
    headers = {**owner.headers, "Content-Type": "application/json"}
    long_title = "x" * 200_000
    response = await client.post("/v1/projects", headers=headers, json={"title": long_title})
    assert response.status_code == 422, response.text
    assert len(response.content) < 1000
    (detail,) = response.json()["error"]["details"]
    assert detail["field"] == "title" and detail["code"] == "TOO_LONG"
    blank = await client.post("/v1/projects", headers=headers, json={"title": "   "})
    (detail,) = blank.json()["error"]["details"]
    assert detail == {"field": "title", "code": "INVALID_FORMAT", "message": "Must not be blank."}
    typed = await client.post("/v1/projects", headers=headers, json={"title": 5})
    (detail,) = typed.json()["error"]["details"]
    assert detail["message"] == "Must be a string."
    for response in (blank, typed):
        assert "\\u" not in response.text and "^" not in response.text
