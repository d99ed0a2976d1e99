"""The outbox never publishes a rolled-back change and never loses a committed one; the audit
log is append-only and tamper-evident."""

from __future__ import annotations

import asyncio
import contextlib

import orjson
import pytest
from sqlalchemy import text
from sqlmodel import select

from models.common.base import rfc3339
from models.records import activity, audit, events
from tessera.core import db
from tessera.core.ids import new_id
from tests.support.factories import login, signed_in
from workers import outbox, webhooks


async def test_rolled_back_change_emits_nothing(app):
    marker = "org_rolledback_test"

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.transaction() as session:
            await activity.record(session=session, action="project.created", org_id=marker)
            raise Boom
    async with db.transaction() as session:
        rows = (await session.exec(select(events.Event).where(events.Event.org_id == marker))).all()
        entries = (
            await session.exec(select(audit.AuditEntry).where(audit.AuditEntry.org_id == marker))
        ).all()
    assert rows == [] and entries == []


async def test_events_wait_in_the_outbox_while_the_queue_is_down(app, monkeypatch):
    org = "org_outbox_down_test"

    refused = []

    def broker_down(*args, **_kwargs):
        refused.append(args)
        raise ConnectionError("redis unavailable")

    # Down before the commit: its NOTIFY wakes the server's own relay at once, which races this
    # test's relay for the row (each skips the one the other holds).
    monkeypatch.setattr(webhooks.fan_out, "send", broker_down)
    async with db.transaction() as session:
        event = await events.emit(session=session, type="project.created", org_id=org, data={})
    for _ in range(10):
        with contextlib.suppress(ConnectionError):
            await outbox.relay_once()
        await asyncio.sleep(0.05)
    assert any(event.id in batch for batch in refused)
    async with db.transaction() as session:
        assert (await session.get(events.Event, event.id)).published_at is None
    monkeypatch.undo()
    for _ in range(50):  # the server's own relay (or this call) publishes it once the queue is back
        async with db.transaction() as session:
            if (await session.get(events.Event, event.id)).published_at is not None:
                break
        await outbox.relay_once()
    async with db.transaction() as session:
        assert (await session.get(events.Event, event.id)).published_at is not None


async def test_sign_in_is_audited_and_chain_verifies(client):
    account = await signed_in(client)
    await login(client, account.email)
    entries = await client.get("/v1/audit?action=user.login", headers=account.headers)
    assert entries.status_code == 200
    body = entries.json()
    assert body["total"] >= 1
    entry = body["data"][0]
    assert entry["actor_id"] == account.user["id"] and entry["ip"] == "127.0.0.1"
    assert entry["request_id"].startswith("req_")
    verified = (await client.get("/v1/audit/verify", headers=account.headers)).json()["data"]
    assert verified == {
        "intact": True,
        "checked": verified["checked"],
        "broken_at": None,
        "reason": None,
    }
    assert verified["checked"] >= 3


async def test_concurrent_writers_in_one_organization_keep_the_chain_valid(client):
    account = await signed_in(client)
    answers = await asyncio.gather(
        *[
            client.post("/v1/projects", json={"title": f"P{i}"}, headers=account.headers)
            for i in range(12)
        ]
    )
    assert [a.status_code for a in answers] == [201] * 12
    page = await client.get("/v1/audit?action=project.created&limit=50", headers=account.headers)
    seqs = sorted(entry["seq"] for entry in page.json()["data"])
    assert len(seqs) == 12 and len(set(seqs)) == 12  # one link each, none shared
    verified = (await client.get("/v1/audit/verify", headers=account.headers)).json()["data"]
    assert verified["intact"] is True and verified["checked"] >= 13


async def test_audit_rows_reject_update_and_delete(app):
    async with db.transaction() as session:
        entry = await audit.record(
            session=session, actor=audit.SYSTEM, action="test.append_only", org_id=None
        )
    for statement in (
        "UPDATE audit_log SET action = 'x' WHERE id = :id",
        "DELETE FROM audit_log WHERE id = :id",
    ):
        with pytest.raises(Exception, match="append-only"):
            async with db.transaction() as session:
                await session.execute(text(statement), {"id": entry.id})


async def test_tampering_is_detected_and_located(client):
    account = await signed_in(client)
    await login(client, account.email)
    await login(client, account.email)
    entries = (await client.get("/v1/audit", headers=account.headers)).json()["data"]
    victim = entries[-1]  # oldest on the page
    async with db.transaction() as session:
        # An attacker with database access bypasses the trigger and edits one entry.
        await session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        await session.execute(
            text("UPDATE audit_log SET ip = '198.51.100.1' WHERE id = :id"), {"id": victim["id"]}
        )
        await session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
    verified = (await client.get("/v1/audit/verify", headers=account.headers)).json()["data"]
    assert verified["intact"] is False
    assert verified["broken_at"] == victim["id"]
    assert "modified" in verified["reason"]


async def test_a_deleted_entry_is_detected_and_located(client):
    account = await signed_in(client)
    for _ in range(3):
        await login(client, account.email)
    entries = (await client.get("/v1/audit?limit=100", headers=account.headers)).json()["data"]
    by_seq = sorted(entries, key=lambda e: e["seq"])
    victim, successor = by_seq[1], by_seq[2]
    async with db.transaction() as session:
        await session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        await session.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": victim["id"]})
        await session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))
    verified = (await client.get("/v1/audit/verify", headers=account.headers)).json()["data"]
    assert verified["intact"] is False
    assert verified["broken_at"] == successor["id"]


def _entry(**overrides) -> audit.AuditEntry:
    fields = {
        "actor": audit.Actor("user", "usr_01J0000000000000000000000A", "203.0.113.9", None),
        "action": "project.updated",
        "org_id": "org_01J0000000000000000000000B",
        "resource_type": "project",
        "resource_id": "prj_01J0000000000000000000000C",
        "meta": {"seq": 7, "note": 'quote " and \\ and "seq":1', "ünï": ["ç", None, 1.5]},
    }
    return audit.new_entry(**{**fields, **overrides})


@pytest.mark.parametrize("seq", [1, 9, 10, 12345678901])
@pytest.mark.parametrize("user_agent", [None, 'agent "seq":2 ✓'])
def test_content_split_around_seq_is_the_canonical_encoding(seq, user_agent):
    """The database completes an entry's content from the bytes around `seq`: together they
    must be exactly the sorted-key encoding of the whole entry that verification hashes."""
    entry = _entry(actor=audit.Actor("user", "usr_x", None, user_agent))
    entry.seq = seq
    whole = {
        "id": entry.id, "chain": entry.chain, "seq": seq, "org_id": entry.org_id,
        "actor_type": "user", "actor_id": "usr_x", "action": entry.action,
        "resource_type": entry.resource_type, "resource_id": entry.resource_id, "ip": None,
        "user_agent": user_agent, "request_id": entry.request_id, "meta": entry.meta,
        "created_at": rfc3339(entry.created_at),
    }  # fmt: skip
    assert audit._content(entry) == orjson.dumps(whole, option=orjson.OPT_SORT_KEYS)


async def test_the_database_links_entries_with_the_hash_verification_expects(app):
    """Entries with awkward content, appended by the database function, verify link by link."""
    chain_org = new_id("org")
    async with db.transaction() as session:
        first = await audit.append(session=session, entry=_entry(org_id=chain_org))
    async with db.transaction() as session:
        second = await audit.append(
            session=session,
            entry=_entry(org_id=chain_org, actor=audit.Actor("api_key", "key_1", None, "ü ✓")),
        )
    assert (first.seq, first.prev_hash) == (1, audit.GENESIS)
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert first.hash == audit.compute_hash(first, audit.GENESIS)
    assert second.hash == audit.compute_hash(second, first.hash)
    async with db.transaction() as session:
        verified = await audit.verify(session=session, org_id=chain_org)
    assert (verified.intact, verified.checked) == (True, 2)


async def _waiting_on_a_lock(statement_start: str) -> bool:
    """Whether a statement beginning with `statement_start` is waiting for a lock."""
    async with db.reader() as session:
        waiting = await session.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock' AND query LIKE :start"
            ),
            {"start": statement_start + "%"},
        )
        return waiting.scalar_one() > 0


async def _meanwhile_a_writer_of_the_organization(org_id: str, write, statement_start: str):
    """`write()` (an HTTP call whose audited write is one statement) while another unit of work
    holds the organization's row as a change of its key would (FOR UPDATE) and then appends
    to its audit chain, as every other writer does: row locks first, then the chain. Returns
    `write()`'s answer; a deadlock fails one of the two."""
    async with db.transaction() as session:
        await session.execute(
            text("SELECT 1 FROM organizations WHERE id = :org FOR UPDATE"), {"org": org_id}
        )
        writing = asyncio.create_task(write())
        for _ in range(200):  # until the one-statement write waits for the row (at most 10 s)
            if await _waiting_on_a_lock(statement_start):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the write never waited for the organization's row")
        await activity.record(session=session, action="organization.updated", org_id=org_id)
    return await writing


async def test_a_project_created_while_its_organization_changes_waits_without_deadlock(client):
    owner = await signed_in(client)
    created = await _meanwhile_a_writer_of_the_organization(
        owner.organization["id"],
        lambda: client.post("/v1/projects", headers=owner.headers, json={"title": "Meanwhile"}),
        "WITH change AS",
    )
    assert created.status_code == 201, created.text


async def test_a_sign_in_while_its_organization_changes_waits_without_deadlock(client):
    owner = await signed_in(client)
    body = {"email": owner.email, "password": owner.password}
    signed = await _meanwhile_a_writer_of_the_organization(
        owner.organization["id"],
        lambda: client.post("/v1/auth/login", json=body),
        "WITH signed AS",
    )
    assert signed.status_code == 200, signed.text
    verified = await client.get("/v1/audit/verify", headers=owner.headers)
    assert verified.json()["data"]["intact"] is True
