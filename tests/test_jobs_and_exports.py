"""Audit exports run as jobs: 202 + Location, progress to `succeeded`, a file with the
organization's entries and nobody else's, readable only by that organization."""

from __future__ import annotations

import asyncio
import csv
import io

import orjson

from models.platform import jobs
from tessera.core import db
from tests.support.factories import login, signed_in


async def wait_for_job(client, account, job_id: str, limit_s: float = 20.0) -> dict:
    deadline = asyncio.get_running_loop().time() + limit_s
    while asyncio.get_running_loop().time() < deadline:
        response = await client.get(f"/v1/jobs/{job_id}", headers=account.headers)
        assert response.status_code == 200, response.text
        job = response.json()["data"]
        if job["status"] in ("succeeded", "failed"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the job did not finish in time")


async def export(client, account, **body) -> dict:
    response = await client.post("/v1/audit/exports", headers=account.headers, json=body)
    assert response.status_code == 202, response.text
    job = response.json()["data"]
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["kind"] == "audit_export" and job["status"] in ("queued", "running", "succeeded")
    return job


async def all_entries(client, account) -> list[dict]:
    entries, cursor = [], None
    while True:
        query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
        page = (await client.get(f"/v1/audit{query}", headers=account.headers)).json()
        entries += page["data"]
        if not page["has_more"]:
            return entries
        cursor = page["next_cursor"]


async def test_csv_export_holds_the_organizations_entries_and_only_them(client):
    alice, mallory = await signed_in(client), await signed_in(client)
    await login(client, alice.email)
    await login(client, mallory.email)
    job = await export(client, alice, format="csv")
    finished = await wait_for_job(client, alice, job["id"])
    assert finished["status"] == "succeeded", finished
    assert finished["progress"] == 100 and finished["finished_at"] is not None
    expected = await all_entries(client, alice)  # includes the audit.exported entry itself
    assert finished["result"] == {
        "download_url": f"/v1/jobs/{job['id']}/result",
        "content_type": "text/csv",
        "rows": len(expected),
    }

    download = await client.get(finished["result"]["download_url"], headers=alice.headers)
    assert download.status_code == 200
    assert download.headers["content-type"].startswith("text/csv")
    assert "attachment" in download.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(download.text)))
    assert list(rows[0]) == list(expected[0])  # every field of AuditEntry, in its order
    assert [r["id"] for r in rows] == [e["id"] for e in reversed(expected)]  # chain order
    assert {r["org_id"] for r in rows} == {alice.organization["id"]}
    mallory_ids = {e["id"] for e in await all_entries(client, mallory)}
    assert mallory_ids.isdisjoint(r["id"] for r in rows)
    first = next(e for e in expected if e["id"] == rows[0]["id"])
    assert orjson.loads(rows[0]["metadata"]) == first["metadata"]
    assert rows[0]["hash"] == first["hash"] and int(rows[0]["seq"]) == first["seq"]


async def test_jsonl_export_applies_the_filters(client):
    account = await signed_in(client)
    for _ in range(2):
        await login(client, account.email)
    job = await export(client, account, format="jsonl", action="user.login")
    finished = await wait_for_job(client, account, job["id"])
    assert finished["result"]["content_type"] == "application/x-ndjson"
    download = await client.get(f"/v1/jobs/{job['id']}/result", headers=account.headers)
    assert download.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in download.text.splitlines()]
    logins = (await client.get("/v1/audit?action=user.login", headers=account.headers)).json()
    assert len(lines) == logins["total"] == finished["result"]["rows"] == 3
    assert lines == list(reversed(logins["data"]))  # exact values, oldest first

    future = await export(client, account, format="jsonl", created_after="2999-01-01T00:00:00Z")
    empty = await wait_for_job(client, account, future["id"])
    assert empty["status"] == "succeeded" and empty["result"]["rows"] == 0
    body = await client.get(f"/v1/jobs/{future['id']}/result", headers=account.headers)
    assert body.status_code == 200 and body.text == ""


async def test_csv_cells_cannot_smuggle_spreadsheet_formulas(client):
    account = await signed_in(client)
    client.headers["User-Agent"] = '=HYPERLINK("https://evil.example")'
    try:
        await login(client, account.email)
    finally:
        del client.headers["User-Agent"]
    job = await export(client, account, format="csv", action="user.login")
    await wait_for_job(client, account, job["id"])
    download = await client.get(f"/v1/jobs/{job['id']}/result", headers=account.headers)
    agents = [r["user_agent"] for r in csv.DictReader(io.StringIO(download.text))]
    assert '\'=HYPERLINK("https://evil.example")' in agents
    assert not any(a.startswith("=") for a in agents)


async def test_jobs_are_visible_to_their_organization_only(client):
    alice, mallory = await signed_in(client), await signed_in(client)
    job = await export(client, alice, format="csv")
    await wait_for_job(client, alice, job["id"])
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/result"):
        response = await client.get(path, headers=mallory.headers)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    missing = await client.get("/v1/jobs/job_01JD3ZK8Q6V4W2X7Y9A1B3C5D7", headers=alice.headers)
    assert missing.status_code == 404
    anonymous = await client.get(f"/v1/jobs/{job['id']}")
    assert anonymous.status_code == 401


async def test_result_of_an_unfinished_job_is_409(client):
    account = await signed_in(client)
    async with db.transaction() as session:
        job = await jobs.create(
            session=session,
            org_id=account.organization["id"],
            kind="audit_export",
            params={"format": "csv"},
            created_by=account.user["id"],
        )  # never queued: it stays `queued`
    status = await client.get(f"/v1/jobs/{job.id}", headers=account.headers)
    assert status.json()["data"]["status"] == "queued"
    assert status.json()["data"]["result"] is None
    response = await client.get(f"/v1/jobs/{job.id}/result", headers=account.headers)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "CONFLICT"


async def test_export_is_itself_audited(client):
    account = await signed_in(client)
    job = await export(client, account, format="jsonl")
    await wait_for_job(client, account, job["id"])
    entries = await client.get("/v1/audit?action=audit.exported", headers=account.headers)
    (entry,) = entries.json()["data"]
    assert entry["resource_id"] == job["id"] and entry["metadata"] == {"format": "jsonl"}


async def test_invalid_export_requests_are_422(client):
    account = await signed_in(client)
    for body in (
        {"format": "xlsx"},
        {},
        {"format": "csv", "created_after": "yesterday"},
        {"format": "csv", "action": "user.login\u0000"},  # PostgreSQL refuses NUL in JSONB
    ):
        response = await client.post("/v1/audit/exports", headers=account.headers, json=body)
        assert response.status_code == 422, body
