"""Retention: purge what the platform no longer needs to keep.

    audit_log          entries older than TESSERA_AUDIT_RETENTION_DAYS
    idempotency_keys   stored answers older than their replay window
    revoked_tokens     revocations of access tokens that have expired anyway
    email_tokens       used or expired reset, verification and change tokens

`run_forever` runs every purge once per TESSERA_MAINTENANCE_INTERVAL inside each worker (see
`workers.runner`); tests call the purge functions directly. Each purge takes an advisory lock for
its transaction, so workers that start a pass together run it one after the other.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta

from sqlalchemy import or_, text
from sqlmodel import delete
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import utcnow
from models.oauth.grants import RevokedToken
from models.platform.idempotency import IdempotencyRecord
from models.signin.account import EmailToken
from tessera.core import db
from tessera.core.settings import get_settings

log = logging.getLogger("tessera.maintenance")

# Removes, per chain, a contiguous run of the oldest entries: every entry up to the newest one
# older than the cutoff (so clock skew between servers cannot punch a hole in the middle of a
# chain), but never a chain's newest entry, which the next append links to.
_PURGE_AUDIT = text(
    """
    DELETE FROM audit_log AS entry
    USING (
        SELECT chain, max(seq) AS upto FROM audit_log WHERE created_at < :cutoff GROUP BY chain
    ) AS expired
    WHERE entry.chain = expired.chain
      AND entry.seq <= expired.upto
      AND entry.seq < (SELECT max(newest.seq) FROM audit_log AS newest
                       WHERE newest.chain = entry.chain)
    """
)


async def _serialise(session: AsyncSession, name: str) -> None:
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": f"maintenance:{name}"}
    )


async def purge_expired_audit() -> int:
    """Delete audit entries past retention. The first entry left in a chain still names its
    removed predecessor in `prev_hash`; `models.records.audit.verify` trusts that first link."""
    cutoff = utcnow() - timedelta(days=get_settings().audit_retention_days)
    async with db.transaction() as session:
        await _serialise(session, "audit")
        # The append-only trigger lets deletes through only in a transaction that says so.
        await session.execute(text("SET LOCAL tessera.audit_retention = 'on'"))
        result = await session.execute(_PURGE_AUDIT, {"cutoff": cutoff})
    return result.rowcount


async def purge_idempotency_keys() -> int:
    cutoff = utcnow() - timedelta(seconds=get_settings().idempotency_ttl_s)
    async with db.transaction() as session:
        await _serialise(session, "idempotency")
        result = await session.exec(
            delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff)
        )
    return result.rowcount


async def purge_revoked_tokens() -> int:
    async with db.transaction() as session:
        await _serialise(session, "revoked_tokens")
        result = await session.exec(delete(RevokedToken).where(RevokedToken.expires_at < utcnow()))
    return result.rowcount


async def purge_email_tokens() -> int:
    async with db.transaction() as session:
        await _serialise(session, "email_tokens")
        result = await session.exec(
            delete(EmailToken).where(
                or_(EmailToken.used_at.is_not(None), EmailToken.expires_at < utcnow())
            )
        )
    return result.rowcount


PURGES: dict[str, Callable[[], Awaitable[int]]] = {
    "audit_log": purge_expired_audit,
    "idempotency_keys": purge_idempotency_keys,
    "revoked_tokens": purge_revoked_tokens,
    "email_tokens": purge_email_tokens,
}


async def purge_all() -> dict[str, int]:
    """Run every purge; one that fails is logged and does not stop the others."""
    removed: dict[str, int] = {}
    for name, purge in PURGES.items():
        try:
            removed[name] = await purge()
        except Exception:
            log.warning("retention purge of %s failed; retrying next pass", name, exc_info=True)
    if any(removed.values()):
        log.info("retention purge removed rows", extra={"removed": removed})
    return removed


async def run_forever() -> None:
    while True:
        await purge_all()
        await asyncio.sleep(get_settings().maintenance_interval_s)
