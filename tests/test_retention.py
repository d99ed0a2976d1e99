"""Retention: purges remove exactly what has expired, and the audit chain still verifies."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlmodel import select

from models.common.base import utcnow
from models.identity.users import User
from models.oauth.grants import RevokedToken
from models.platform.idempotency import IdempotencyRecord
from models.records import audit
from models.signin import account as verification
from models.signin.single_use_tokens import SingleUseToken
from tessera.core import db
from tests.support.factories import login, signed_in
from workers import maintenance


async def _append_backdated(chain_org: str, count: int, age: timedelta) -> list[audit.AuditEntry]:
    """Entries as the application would have written them `age` ago (the trigger forbids
    editing `created_at` later, and it is part of the hash)."""
    written = []
    async with db.transaction() as session:
        prev = audit.GENESIS
        for seq in range(1, count + 1):
            entry = audit.AuditEntry(
                chain=chain_org,
                seq=seq,
                org_id=chain_org,
                actor_type="system",
                action="test.old",
                created_at=utcnow() - age,
                prev_hash=prev,
                hash="",
            )
            entry.hash = audit.compute_hash(entry, prev)
            session.add(entry)
            prev = entry.hash
            written.append(entry)
    return written


async def test_purge_removes_only_expired_entries_and_the_chain_still_verifies(app):
    org = f"org_retention_{uuid.uuid4().hex[:12]}"
    old = await _append_backdated(org, 3, timedelta(days=91))  # retention is 90 days
    async with db.transaction() as session:
        fresh = [
            await audit.record(session=session, actor=audit.SYSTEM, action="test.new", org_id=org)
            for _ in range(2)
        ]
    assert fresh[0].prev_hash == old[-1].hash  # one chain

    assert await maintenance.purge_expired_audit() >= 3
    async with db.transaction() as session:
        left = (
            await session.exec(
                select(audit.AuditEntry)
                .where(audit.AuditEntry.chain == org)
                .order_by(audit.AuditEntry.seq)
            )
        ).all()
        verified = await audit.verify(session=session, org_id=org)
    assert [e.id for e in left] == [e.id for e in fresh]
    assert left[0].prev_hash == old[-1].hash  # points at a removed entry, and that is fine
    assert verified.intact and verified.checked == 2

    # The chain goes on from the retained entries.
    async with db.transaction() as session:
        nxt = await audit.record(
            session=session, actor=audit.SYSTEM, action="test.next", org_id=org
        )
        assert nxt.seq == 6 and nxt.prev_hash == fresh[-1].hash
        assert (await audit.verify(session=session, org_id=org)).intact


async def test_a_chain_keeps_its_newest_entry_however_old(app):
    org = f"org_dormant_{uuid.uuid4().hex[:12]}"
    old = await _append_backdated(org, 2, timedelta(days=400))
    await maintenance.purge_expired_audit()
    async with db.transaction() as session:
        left = (
            await session.exec(select(audit.AuditEntry).where(audit.AuditEntry.chain == org))
        ).all()
        assert [e.id for e in left] == [old[-1].id]
        nxt = await audit.record(
            session=session, actor=audit.SYSTEM, action="test.next", org_id=org
        )
    assert nxt.seq == 3 and nxt.prev_hash == old[-1].hash  # no restart from genesis


async def test_an_organizations_log_is_untouched_while_within_retention(client):
    account = await signed_in(client)
    await login(client, account.email)
    before = (await client.get("/v1/audit", headers=account.headers)).json()
    await maintenance.purge_expired_audit()
    after = (await client.get("/v1/audit", headers=account.headers)).json()
    assert after["total"] == before["total"] >= 3
    verified = (await client.get("/v1/audit/verify", headers=account.headers)).json()["data"]
    assert verified["intact"] is True and verified["checked"] == before["total"]


async def test_deleting_without_the_retention_flag_is_still_rejected(app):
    org = f"org_guarded_{uuid.uuid4().hex[:12]}"
    await _append_backdated(org, 2, timedelta(days=200))
    await maintenance.purge_expired_audit()  # its SET LOCAL must not outlive its transaction
    for _ in range(3):  # whichever pooled connection comes next
        with pytest.raises(Exception, match="append-only"):
            async with db.transaction() as session:
                await session.execute(text("DELETE FROM audit_log WHERE chain = :c"), {"c": org})
    async with db.transaction() as session:
        count = (
            await session.execute(
                text("SELECT count(*) FROM audit_log WHERE chain = :c"), {"c": org}
            )
        ).scalar_one()
    assert count == 1  # the purge removed the older entry; the plain deletes removed nothing


async def test_expired_tokens_and_idempotency_keys_are_purged(client):
    account = await signed_in(client)
    now = utcnow()
    tag = uuid.uuid4().hex[:12]
    async with db.transaction() as session:
        user = await session.get(User, account.user["id"])
        live = await verification.issue(
            session=session, user=user, purpose="email_verify", address=user.email
        )
        session.add_all(
            [
                SingleUseToken(
                    user_id=user.id,
                    purpose="password_reset",
                    token_hash=f"{tag}-expired".ljust(64, "0"),
                    expires_at=now - timedelta(minutes=1),
                ),
                SingleUseToken(
                    user_id=user.id,
                    purpose="password_reset",
                    token_hash=f"{tag}-used".ljust(64, "0"),
                    expires_at=now + timedelta(hours=1),
                    used_at=now,
                ),
                RevokedToken(jti=f"{tag}-old", expires_at=now - timedelta(seconds=1)),
                RevokedToken(jti=f"{tag}-live", expires_at=now + timedelta(minutes=10)),
                IdempotencyRecord(
                    principal=f"test:{tag}",
                    key="old",
                    method="POST",
                    path="/v1/x",
                    request_hash="0" * 64,
                    created_at=now - timedelta(days=2),
                ),
                IdempotencyRecord(
                    principal=f"test:{tag}",
                    key="new",
                    method="POST",
                    path="/v1/x",
                    request_hash="0" * 64,
                ),
            ]
        )
    removed = await maintenance.purge_all()
    assert removed["email_tokens"] >= 2
    assert removed["revoked_tokens"] >= 1 and removed["idempotency_keys"] >= 1
    async with db.transaction() as session:
        tokens = (
            await session.exec(select(SingleUseToken).where(SingleUseToken.user_id == user.id))
        ).all()
        revoked = (
            await session.exec(select(RevokedToken.jti).where(RevokedToken.jti.startswith(tag)))
        ).all()
        keys = (
            await session.exec(
                select(IdempotencyRecord.key).where(IdempotencyRecord.principal == f"test:{tag}")
            )
        ).all()
    assert [t.purpose for t in tokens] == ["email_verify"]  # the live one
    assert revoked == [f"{tag}-live"] and keys == ["new"]
    confirmed = await client.post(
        "/v1/users/me/email/confirm", headers=account.headers, json={"token": live}
    )
    assert confirmed.status_code == 200


async def test_every_worker_runs_the_purges_on_its_event_loop(app):
    from dramatiq.asyncio import get_event_loop_thread

    async def task_names() -> set[str]:
        return {task.get_name() for task in asyncio.all_tasks()}

    loop = get_event_loop_thread().loop  # the in-process worker's (runner.start)
    names = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(task_names(), loop))
    assert "maintenance" in names


async def test_the_maintenance_loop_repeats_at_the_configured_interval(monkeypatch):
    from tessera.core.settings import get_settings

    passes: list[str] = []

    async def purge() -> int:
        passes.append("audit_log")
        return 0

    async def broken() -> int:
        raise RuntimeError("database away")

    monkeypatch.setattr(get_settings(), "maintenance_interval_s", 0.05)
    monkeypatch.setattr(maintenance, "PURGES", {"broken": broken, "audit_log": purge})
    task = asyncio.create_task(maintenance.run_forever())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(passes) >= 3  # a failing purge does not stop the others, nor the loop
