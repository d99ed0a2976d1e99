"""Conditional GET: `If-None-Match` with the current `ETag` answers 304 without a body, on every
resource that has an ETag."""

from __future__ import annotations

from tessera.web.contract import get_contract
from tests.support.factories import signed_in


async def _assert_conditional(client, path: str, headers: dict) -> str:
    first = await client.get(path, headers=headers)
    assert first.status_code == 200, first.text
    etag = first.headers["etag"]
    again = await client.get(path, headers={**headers, "If-None-Match": etag})
    assert again.status_code == 304, (path, again.text)
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert "content-type" not in again.headers
    assert again.headers["x-request-id"]
    for listed in (f'"nope", W/{etag}', "*"):
        weak = await client.get(path, headers={**headers, "If-None-Match": listed})
        assert weak.status_code == 304, (path, listed)
    other = await client.get(path, headers={**headers, "If-None-Match": '"stale"'})
    assert other.status_code == 200 and other.json() == first.json()
    return etag


async def test_resources_with_an_etag_answer_304_when_it_is_current(client):
    owner = await signed_in(client)
    headers = owner.headers
    project = await client.post("/v1/projects", headers=headers, json={"title": "Cached"})
    project_path = project.headers["location"]
    for path in (
        "/v1/users/me",
        project_path,
        f"/v1/organizations/{owner.organization['id']}",
    ):
        await _assert_conditional(client, path, headers)
    # After a change the old ETag no longer matches: the new representation comes back.
    etag = await _assert_conditional(client, project_path, headers)
    changed = await client.patch(project_path, headers=headers, json={"title": "Changed"})
    assert changed.status_code == 200
    fresh = await client.get(project_path, headers={**headers, "If-None-Match": etag})
    assert fresh.status_code == 200 and fresh.json()["data"]["title"] == "Changed"


async def test_errors_are_never_turned_into_304(client):
    owner = await signed_in(client)
    missing = await client.get(
        "/v1/projects/prj_01JD3ZK8Q6V4W2X7Y9A1B3C5D7",
        headers={**owner.headers, "If-None-Match": "*"},
    )
    assert missing.status_code == 404


def test_every_get_with_an_etag_documents_304():
    paths = get_contract().document["paths"]
    for path, item in paths.items():
        operation = item.get("get")
        if not operation:
            continue
        ok = operation["responses"].get("200", {})
        if "ETag" in ok.get("headers", {}):
            assert "304" in operation["responses"], path
            names = [p.get("$ref", "").rsplit("/", 1)[-1] for p in operation.get("parameters", [])]
            assert "IfNoneMatch" in names, path
