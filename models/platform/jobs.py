"""Long-running work answered with 202: its status, progress and result.

A job belongs to an organization; a caller of another organization gets 404. A job whose kind
handles sensitive data also needs the permission of the operation that started it (an audit
export needs `audit:read` to be read back), so handing a job id around grants nothing.

Workers move a job queued -> running -> succeeded | failed. A job that produces a file names its
`format` (`csv`, `jsonl`) in its params; the file lives at `<data_dir>/exports/<job_id>.<format>`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import id_field, jsonb_field, rfc3339, timestamp_field, utcnow
from tessera.core.errors import Conflict, NotFound
from tessera.core.settings import get_settings

STATUSES = ("queued", "running", "succeeded", "failed")
# Permission a caller needs, beyond membership of the job's organization, per job kind.
REQUIRED_PERMISSION: dict[str, str] = {"audit_export": "audit:read"}
# File extension -> media type of the files jobs produce.
MEDIA_TYPES = {"csv": "text/csv", "jsonl": "application/x-ndjson"}


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: str = id_field("job")
    org_id: str | None = Field(default=None, max_length=40, index=True)
    kind: str = Field(max_length=50)
    status: str = Field(default="queued", max_length=20)  # queued | running | succeeded | failed
    progress: int = 0  # percent
    params: dict = jsonb_field()
    result: dict = jsonb_field()
    error: str | None = Field(default=None, max_length=500)
    created_by: str | None = Field(default=None, max_length=40)
    created_at: datetime = timestamp_field(default_factory=utcnow)
    updated_at: datetime = timestamp_field(default_factory=utcnow)
    finished_at: datetime | None = timestamp_field(default=None)


def public(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "result": job.result or None,
        "error": job.error,
        "created_at": rfc3339(job.created_at),
        "updated_at": rfc3339(job.updated_at),
        "finished_at": rfc3339(job.finished_at),
    }


async def create(
    *,
    session: AsyncSession,
    org_id: str,
    kind: str,
    params: dict[str, Any],
    created_by: str | None,
) -> Job:
    job = Job(org_id=org_id, kind=kind, params=params, created_by=created_by)
    session.add(job)
    await session.flush()
    return job


async def get(
    *, session: AsyncSession, org_id: str, job_id: str, can: Callable[[str], bool]
) -> Job:
    """The organization's job, if the caller may see its kind; 404 otherwise (never 403: that
    would confirm that the id exists)."""
    job = await session.get(Job, job_id)
    permission = REQUIRED_PERMISSION.get(job.kind) if job is not None else None
    if job is None or job.org_id != org_id or (permission and not can(permission)):
        raise NotFound("The job was not found.")
    return job


def file_path(job_id: str, extension: str) -> Path:
    return get_settings().data_dir / "exports" / f"{job_id}.{extension}"


def result_file(job: Job) -> tuple[Path, str, str]:
    """(path, media type, download name) of the file a finished job produced."""
    if job.status != "succeeded":
        detail = "failed" if job.status == "failed" else "has not finished yet"
        raise Conflict(f"The job {detail}; it has no result to download.")
    extension = job.params.get("format")
    path = file_path(job.id, extension) if extension in MEDIA_TYPES else None
    if path is None or not path.is_file():
        raise NotFound("This job's result file is not available.")
    return path, MEDIA_TYPES[extension], f"{job.kind}-{job.id}.{extension}"


# --- worker side -----------------------------------------------------------------------------


async def claim(*, session: AsyncSession, job_id: str) -> Job | None:
    """Mark the job running; None when it is gone or already finished. A running job is
    claimed again: its message was redelivered because the worker died mid-way."""
    job = await session.get(Job, job_id, with_for_update=True)
    if job is None or job.status not in ("queued", "running"):
        return None
    job.status, job.progress, job.updated_at = "running", 0, utcnow()
    return job


async def set_progress(*, session: AsyncSession, job_id: str, progress: int) -> None:
    job = await session.get(Job, job_id, with_for_update=True)
    if job is not None and job.status == "running":
        job.progress, job.updated_at = max(0, min(progress, 99)), utcnow()


async def succeed(*, session: AsyncSession, job_id: str, result: dict[str, Any]) -> None:
    job = await session.get(Job, job_id, with_for_update=True)
    if job is not None:
        now = utcnow()
        job.status, job.progress, job.result, job.error = "succeeded", 100, result, None
        job.updated_at = job.finished_at = now


async def fail(*, session: AsyncSession, job_id: str, error: str) -> None:
    job = await session.get(Job, job_id, with_for_update=True)
    if job is not None:
        now = utcnow()
        job.status, job.error = "failed", error[:500]
        job.updated_at = job.finished_at = now
