"""The benchmark's FastAPI reference answers like Tessera: `make bench` compares like with like."""

from __future__ import annotations

import httpx
import pytest

from bench.reference_fastapi import build
from tests.support.factories import signed_in


@pytest.mark.parametrize("same_work", [True, False])
async def test_reference_answers_as_tessera_does(client, same_work):
    account = await signed_in(client)
    transport = httpx.ASGITransport(app=build(same_work=same_work), client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as reference:
        body = {"title": "Quarterly plan"}
        mine = await client.post("/v1/projects", json=body, headers=account.headers)
        theirs = await reference.post("/v1/projects", json=body, headers=account.headers)
        assert (mine.status_code, theirs.status_code) == (201, 201)
        assert theirs.headers["location"] == f"/v1/projects/{theirs.json()['data']['id']}"
        assert theirs.json()["data"].keys() == mine.json()["data"].keys()
        assert ("x-ratelimit-limit" in theirs.headers) is same_work

        me = await client.get("/v1/users/me", headers=account.headers)
        their_me = await reference.get("/v1/users/me", headers=account.headers)
        assert their_me.status_code == 200 and their_me.json() == me.json()
        assert ("x-ratelimit-remaining" in their_me.headers) is same_work

        refused = await reference.post("/v1/projects", json={"title": " "}, headers=account.headers)
        assert refused.status_code == 422
        anonymous = await reference.get("/v1/users/me")
        assert anonymous.status_code == 401 and anonymous.json()["error"]["code"]
