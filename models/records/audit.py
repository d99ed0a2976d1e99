"""The append-only, hash-chained audit log.

Each organization has its own chain: an entry's `hash` is SHA-256 over the previous entry's hash
and the entry's own canonical content, so editing or deleting any entry breaks every later link.
A database trigger rejects UPDATE and DELETE unless the retention job has said so for its
transaction (`SET LOCAL tessera.audit_retention = 'on'`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import BigInteger, Column, Index, bindparam, cast, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import id_field, jsonb_field, rfc3339, timestamp_field, utcnow
from tessera.core.db import fetch_one
from tessera.core.ids import new_id
from tessera.core.request_context import request_id_if_any

GENESIS = "0" * 64
# The chain of entries without an organization (sign-ins before one exists, operator actions).
PLATFORM_CHAIN = "platform"


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_chain_seq", "chain", "seq", unique=True),
        Index("ix_audit_org_created", "org_id", "created_at"),
    )

    id: str = id_field("aud")
    chain: str = Field(max_length=40)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    org_id: str | None = Field(default=None, max_length=40)
    actor_type: str = Field(max_length=20)
    actor_id: str | None = Field(default=None, max_length=40)
    action: str = Field(max_length=100, index=True)
    resource_type: str | None = Field(default=None, max_length=50)
    resource_id: str | None = Field(default=None, max_length=40)
    ip: str | None = Field(default=None, max_length=64)
    user_agent: str | None = Field(default=None, max_length=500)
    request_id: str | None = Field(default=None, max_length=128)
    meta: dict = jsonb_field()
    created_at: datetime = timestamp_field(default_factory=utcnow)
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)


# An entry's own fields: with `seq`, which the chain decides, what its hash covers.
_OWN_FIELDS = (
    "id",
    "chain",
    "org_id",
    "actor_type",
    "actor_id",
    "action",
    "resource_type",
    "resource_id",
    "ip",
    "user_agent",
    "request_id",
    "meta",
    "created_at",
)


def _own(entry: AuditEntry | PendingEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in _OWN_FIELDS}


def _content_around_seq(entry: AuditEntry | PendingEntry) -> tuple[bytes, bytes]:
    """The entry's canonical content (orjson, sorted keys) as the bytes before and after the
    decimal `seq`: `seq` and `user_agent` sort last."""
    fields = _own(entry)
    user_agent = fields.pop("user_agent")
    fields["created_at"] = rfc3339(fields["created_at"])
    head = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return head[:-1] + b',"seq":', b',"user_agent":' + orjson.dumps(user_agent) + b"}"


def _content(entry: AuditEntry | PendingEntry) -> bytes:
    before, after = _content_around_seq(entry)
    return before + str(entry.seq).encode() + after


def compute_hash(entry: AuditEntry | PendingEntry, prev_hash: str) -> str:
    return hashlib.sha256(prev_hash.encode() + b"\n" + _content(entry)).hexdigest()


@dataclass(frozen=True)
class Actor:
    type: str  # user | api_key | system
    id: str | None = None
    ip: str | None = None
    user_agent: str | None = None


SYSTEM = Actor("system")


@dataclass(slots=True)
class PendingEntry:
    """An entry on its way into its chain: `AuditEntry`'s fields as a plain object (building the
    table model validated every field, ~90 µs per audited write). `append` links it."""

    chain: str
    org_id: str | None
    actor_type: str
    actor_id: str | None
    action: str
    resource_type: str | None
    resource_id: str | None
    ip: str | None
    user_agent: str | None
    request_id: str | None
    meta: dict[str, Any]
    id: str = field(default_factory=lambda: new_id("aud"))
    created_at: datetime = field(default_factory=utcnow)
    seq: int = 0
    prev_hash: str = ""
    hash: str = ""


def new_entry(
    *,
    actor: Actor,
    action: str,
    org_id: str | None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    meta: dict[str, Any] | None = None,
) -> PendingEntry:
    """An entry not yet linked into its chain (`append` does that)."""
    return PendingEntry(
        chain=org_id or PLATFORM_CHAIN,
        org_id=org_id,
        actor_type=actor.type,
        actor_id=actor.id,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        ip=actor.ip,
        user_agent=actor.user_agent,
        request_id=request_id_if_any(),
        meta=meta or {},
    )


# Migration 0009's function locks the chain, links the entry to its last one and inserts it,
# hashing the same bytes as `compute_hash`: one round trip. Its arguments, in order, are the
# entry's parameters (`append_params`).
_APPEND_ARGS = (
    *("id", "chain", "org_id", "actor_type", "actor_id", "action", "resource_type"),
    *("resource_id", "ip", "user_agent", "request_id", "meta", "created_at"),
    *("content_before_seq", "content_after_seq"),
)


def _call_sql(resource_id: str) -> str:
    args = [
        resource_id if name == "resource_id" else f"CAST(:{name} AS jsonb)" if name == "meta"
        else f":{name}"
        for name in _APPEND_ARGS
    ]  # fmt: skip
    return f"tessera_audit_append({', '.join(args)})"


APPEND_SQL = "SELECT seq, prev_hash, hash FROM " + _call_sql(":resource_id")  # noqa: S608 (constants)
_STATEMENTS: dict[Any, Any] = {None: text(APPEND_SQL)}


def _statement(key: Any, sql: str):
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = _STATEMENTS[key] = text(sql)
    return statement


def append_params(entry: AuditEntry | PendingEntry, prefix: str = "") -> dict[str, Any]:
    before, after = _content_around_seq(entry)
    params = {
        **_own(entry),
        "meta": orjson.dumps(entry.meta).decode(),
        "content_before_seq": before,
        "content_after_seq": after,
    }
    return {prefix + name: value for name, value in params.items()} if prefix else params


def appended_after(rows) -> TableValuedAlias:
    """For a statement built with SQLAlchemy: the append as a LATERAL table (seq, prev_hash,
    hash) over `rows`, a CTE whose `id` is the entry's `resource_id`. It runs once for each of
    their rows: no row, no entry. Its parameters are `append_params(entry, prefix="audit_")`.
    The statement must lock the rows its foreign keys name first (see `append_with_change`)."""
    args = [
        rows.c.id if name == "resource_id" else cast(bindparam("audit_meta"), JSONB)
        if name == "meta" else bindparam(f"audit_{name}")
        for name in _APPEND_ARGS
    ]  # fmt: skip
    call = func.tessera_audit_append(*args).table_valued("seq", "prev_hash", "hash")
    return call.lateral("appended")


async def append(
    *,
    session: AsyncSession,
    entry: AuditEntry | PendingEntry,
    alongside: tuple[str, dict[str, Any]] | None = None,
) -> AuditEntry | PendingEntry:
    """Link `entry` to the end of its chain inside the caller's transaction.

    Appends to one chain are serialised for the rest of the transaction. What an ORM session
    has pending is written first, so that the lock, which every writer of the organization waits
    for, is held only for this statement and the commit. `alongside` is an `INSERT … SELECT`
    without a FROM clause and its parameters (names apart from the entry's), sent in the same
    round trip."""
    sql, params = alongside or (None, {})
    statement = _statement(sql, f"WITH alongside AS ({sql}) {APPEND_SQL}")
    params = {**params, **append_params(entry)}
    await session.flush()
    entry.seq, entry.prev_hash, entry.hash = (await session.execute(statement, params)).one()
    return entry


async def append_with_change(
    *,
    change: tuple[str, dict[str, Any]],
    entry: AuditEntry | PendingEntry,
    alongside: tuple[str, dict[str, Any]],
) -> bool:
    """`change` with `entry` and `alongside` (as in `append`) in one statement that commits on
    its own: one round trip, and the chain's lock held only while the statement runs and
    commits, never across a round trip. `change` is a data-modifying statement that returns
    the `id` of the row it wrote, the entry's `resource_id`, or no row when it wrote nothing:
    then neither the entry nor `alongside` is written, and the answer is False.

    `change` must lock the rows its foreign keys name (`FOR KEY SHARE`). PostgreSQL checks
    foreign keys at the end of the statement, after the chain's lock is taken here, while
    every other writer of the organization holds its row locks before it appends: a writer
    that changed the organization's row would wait for the chain while this statement waits
    for the row, a deadlock."""
    (change_sql, change_params), (sql, params) = change, alongside
    # The entry depends on the change's row (LATERAL): no row, no entry. The statements given
    # are the callers' constants, with bind parameters for every value.
    statement = _statement(
        (change_sql, sql),
        f"WITH change AS ({change_sql}), alongside AS ({sql} FROM change) "  # noqa: S608
        "SELECT a.seq FROM change "
        f"CROSS JOIN LATERAL {_call_sql('change.id')} a",
    )
    row = await fetch_one(statement, {**change_params, **params, **append_params(entry)})
    return row is not None


async def record(*, session: AsyncSession, **fields: Any) -> PendingEntry:
    """`new_entry(**fields)` appended to its chain inside the caller's transaction."""
    return await append(session=session, entry=new_entry(**fields))


@dataclass
class Verification:
    intact: bool
    checked: int
    broken_at: str | None = None
    reason: str | None = None


async def verify(*, session: AsyncSession, org_id: str | None) -> Verification:
    """Walk the chain in order; report the first entry whose link or content does not match.

    The first retained entry may point at an entry the retention job removed; its stored
    `prev_hash` is trusted, every later link is checked."""
    chain = org_id or PLATFORM_CHAIN
    rows = (
        await session.exec(
            select(AuditEntry).where(AuditEntry.chain == chain).order_by(AuditEntry.seq)
        )
    ).all()
    prev: str | None = None
    expected_seq: int | None = None
    for count, entry in enumerate(rows, start=1):
        if prev is not None and entry.prev_hash != prev:
            return Verification(False, count, entry.id, "link to the previous entry does not match")
        if expected_seq is not None and entry.seq != expected_seq:
            return Verification(False, count, entry.id, "an entry before this one is missing")
        if compute_hash(entry, entry.prev_hash) != entry.hash:
            return Verification(False, count, entry.id, "entry content was modified")
        prev, expected_seq = entry.hash, entry.seq + 1
    return Verification(True, len(rows))


def public(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "seq": entry.seq,
        "org_id": entry.org_id,
        "actor_type": entry.actor_type,
        "actor_id": entry.actor_id,
        "action": entry.action,
        "resource_type": entry.resource_type,
        "resource_id": entry.resource_id,
        "ip": entry.ip,
        "user_agent": entry.user_agent,
        "request_id": entry.request_id,
        "metadata": entry.meta,
        "created_at": rfc3339(entry.created_at),
        "hash": entry.hash,
        "prev_hash": entry.prev_hash,
    }


def list_query(
    *,
    org_id: str,
    actor_id: str | None = None,
    action: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
):
    stmt = select(AuditEntry).where(AuditEntry.org_id == org_id)
    filters = [
        (AuditEntry.actor_id, actor_id),
        (AuditEntry.action, action),
        (AuditEntry.resource_type, resource_type),
        (AuditEntry.resource_id, resource_id),
    ]
    for column, value in filters:
        if value is not None:
            stmt = stmt.where(column == value)
    if created_after:
        stmt = stmt.where(AuditEntry.created_at >= created_after)
    if created_before:
        stmt = stmt.where(AuditEntry.created_at < created_before)
    return stmt
