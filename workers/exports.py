"""Exports that run as jobs: the organization's audit log as CSV or JSON Lines.

The export is a snapshot: it covers the organization's chain up to the newest entry when the job
starts, read in batches in chain order (so memory stays flat however long the log is), written to
a partial file that is renamed into place when complete. Progress is stored after each batch.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from datetime import datetime
from typing import Any

import dramatiq
import orjson
from sqlalchemy import func
from sqlmodel import select

from models.platform import jobs
from models.records import audit
from tessera.core import db, metrics

log = logging.getLogger("tessera.exports")
BATCH = 500
COLUMNS = (
    "id",
    "seq",
    "org_id",
    "actor_type",
    "actor_id",
    "action",
    "resource_type",
    "resource_id",
    "ip",
    "user_agent",
    "request_id",
    "metadata",
    "created_at",
    "hash",
    "prev_hash",
)
# A spreadsheet runs a cell that starts with one of these as a formula; user agents and metadata
# come from clients, so such cells get a leading apostrophe (JSON Lines keeps exact values).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, dict):
        value = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return "" if value is None else value


def _render(entries: list[audit.AuditEntry], fmt: str) -> str:
    if fmt == "jsonl":
        return "".join(orjson.dumps(audit.public(e)).decode() + "\n" for e in entries)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for entry in entries:
        row = audit.public(entry)
        writer.writerow([_cell(row[column]) for column in COLUMNS])
    return buffer.getvalue()


def _header(fmt: str) -> str:
    return ",".join(COLUMNS) + "\r\n" if fmt == "csv" else ""


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


async def _write(job: jobs.Job) -> int:
    params, org_id = job.params, job.org_id or ""
    fmt = params["format"]
    query = audit.list_query(
        org_id=org_id,
        action=params.get("action"),
        created_after=_when(params.get("created_after")),
        created_before=_when(params.get("created_before")),
    ).where(audit.AuditEntry.chain == org_id)
    async with db.transaction() as session:
        newest = (
            await session.exec(
                select(func.max(audit.AuditEntry.seq)).where(audit.AuditEntry.chain == org_id)
            )
        ).one() or 0
        query = query.where(audit.AuditEntry.seq <= newest)
        total = (await session.exec(select(func.count()).select_from(query.subquery()))).one()
    path = jobs.file_path(job.id, fmt)
    partial = path.with_name(f".{path.name}.part")
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    written, last_seq = 0, 0
    out = await asyncio.to_thread(partial.open, "w", encoding="utf-8", newline="")
    try:
        await asyncio.to_thread(out.write, _header(fmt))
        while True:
            async with db.transaction() as session:
                batch = (
                    await session.exec(
                        query.where(audit.AuditEntry.seq > last_seq)
                        .order_by(audit.AuditEntry.seq)
                        .limit(BATCH)
                    )
                ).all()
            if not batch:
                break
            await asyncio.to_thread(out.write, _render(list(batch), fmt))
            written, last_seq = written + len(batch), batch[-1].seq
            async with db.transaction() as session:
                await jobs.set_progress(
                    session=session, job_id=job.id, progress=written * 100 // max(total, 1)
                )
    except BaseException:
        await asyncio.to_thread(out.close)
        await asyncio.to_thread(partial.unlink, missing_ok=True)
        raise
    await asyncio.to_thread(out.close)
    await asyncio.to_thread(partial.replace, path)
    return written


@dramatiq.actor(queue_name="exports", max_retries=3, min_backoff=5_000, time_limit=3_600_000)
async def audit_export(job_id: str) -> None:
    async with db.transaction() as session:
        job = await jobs.claim(session=session, job_id=job_id)
    if job is None:
        return
    try:
        rows = await _write(job)
    except Exception:
        # Recorded on the job rather than retried: the client sees `failed` and asks again.
        log.exception("audit export failed", extra={"job_id": job_id})
        async with db.transaction() as session:
            await jobs.fail(
                session=session, job_id=job_id, error="The export failed; start a new one."
            )
        metrics.JOBS.labels("audit_export", "failed").inc()
        return
    fmt = job.params["format"]
    result = {
        "download_url": f"/v1/jobs/{job_id}/result",
        "content_type": jobs.MEDIA_TYPES[fmt],
        "rows": rows,
    }
    async with db.transaction() as session:
        await jobs.succeed(session=session, job_id=job_id, result=result)
    metrics.JOBS.labels("audit_export", "succeeded").inc()
