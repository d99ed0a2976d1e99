"""Background jobs started by 202 answers: their status, and the files they produce."""

from __future__ import annotations

from starlette.responses import FileResponse

from models.platform import jobs
from tessera.core import db
from tessera.core.caller import require_org
from tessera.web.http import one


async def get_job(job_id: str):
    caller = require_org()
    async with db.reader() as session:
        job = await jobs.get(session=session, org_id=caller.org_id, job_id=job_id, can=caller.can)
    return one(jobs.public(job))


async def get_job_result(job_id: str):
    caller = require_org()
    async with db.reader() as session:
        job = await jobs.get(session=session, org_id=caller.org_id, job_id=job_id, can=caller.can)
    path, media_type, filename = jobs.result_file(job)
    # Streamed from disk in chunks: an export can be far larger than memory allows.
    return FileResponse(path, media_type=media_type, filename=filename)
