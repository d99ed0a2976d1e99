"""Operational state: heartbeats that show background workers are consuming jobs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import timestamp_field, utcnow


class WorkerHeartbeat(SQLModel, table=True):
    __tablename__ = "worker_heartbeats"

    worker_id: str = Field(primary_key=True, max_length=200)
    beat_at: datetime = timestamp_field(default_factory=utcnow)


async def record_heartbeat(*, session: AsyncSession, worker_id: str) -> None:
    stmt = insert(WorkerHeartbeat).values(worker_id=worker_id, beat_at=utcnow())
    stmt = stmt.on_conflict_do_update(index_elements=["worker_id"], set_={"beat_at": utcnow()})
    await session.exec(stmt)


async def last_heartbeat(*, session: AsyncSession) -> datetime | None:
    result = await session.exec(select(func.max(WorkerHeartbeat.beat_at)))
    return result.one()
