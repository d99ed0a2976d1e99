"""Files: uploads streamed to storage, their metadata, downloads (ranges, 304) and temporary
download links that work without credentials."""

from __future__ import annotations

from connexion.context import request
from starlette.responses import Response, StreamingResponse

from models.files import download, links, records, storage, upload
from tessera.core import db
from tessera.core.caller import require_org
from tessera.core.request_context import request_header
from tessera.web.http import created, listing, one


async def list_files(
    limit: int = 20,
    offset: int = 0,
    cursor: str | None = None,
    sort: str = "-created_at",
    purpose: str | None = None,
    owner_id: str | None = None,
):
    caller = require_org()
    async with db.transaction() as session:
        return await listing(
            session,
            records.list_query(org_id=caller.org_id, purpose=purpose, owner_id=owner_id),
            model=records.File,
            render=records.public,
            limit=limit,
            offset=offset,
            cursor=cursor,
            sort=sort,
        )


async def upload_file():
    # No arguments: the operation is `x-streamed-body`, so the body reaches us unread.
    caller = require_org()
    received = await upload.receive(
        org_id=caller.org_id,
        content_type=request_header(b"content-type"),
        body=request.stream(),
    )
    async with upload.kept_only_if_recorded(received), db.transaction() as session:
        file = await records.create(
            session=session, org_id=caller.org_id, owner_id=caller.user_id, received=received
        )
    return created(records.public(file), f"/v1/files/{file.id}")


async def get_file(file_id: str):
    caller = require_org()
    async with db.reader() as session:
        file = await records.get(session=session, org_id=caller.org_id, file_id=file_id)
    return one(records.public(file))


async def delete_file(file_id: str):
    caller = require_org()
    async with db.transaction() as session:
        file = await records.get(session=session, org_id=caller.org_id, file_id=file_id)
        records.ensure_may_delete(file, permissions=set(caller.permissions), user_id=caller.user_id)
        await records.delete(session=session, file=file)
    return None, 204


async def create_file_link(file_id: str, body: dict | None = None):
    caller = require_org()
    # Without a body (nor a Content-Type), Connexion hands over the schema's default unparsed.
    options = body if isinstance(body, dict) else {}
    expires_in = options.get("expires_in", links.DEFAULT_TTL_S)
    async with db.transaction() as session:
        file = await records.get(session=session, org_id=caller.org_id, file_id=file_id)
        link = links.create(file_id=file.id, expires_in=expires_in)
        await records.link_created(session=session, file=file, expires_at=link["expires_at"])
    return {"data": link}, 201


async def get_file_content(file_id: str):
    caller = require_org()
    async with db.reader() as session:
        file = await records.get(session=session, org_id=caller.org_id, file_id=file_id)
    return _content(file)


async def download_file(file_id: str, expires: int, signature: str):
    links.verify(file_id=file_id, expires=expires, signature=signature)
    async with db.reader() as session:
        file = await records.get_for_link(session=session, file_id=file_id)
    return _content(file)


def _content(file: records.File) -> Response:
    answer = download.answer(
        file,
        if_none_match=request_header(b"if-none-match"),
        range_header=request_header(b"range"),
        if_range=request_header(b"if-range"),
    )
    if answer.status == 304 or file.size == 0:
        return Response(
            status_code=answer.status,
            headers=answer.headers,
            media_type=None if answer.status == 304 else file.content_type,
        )
    chunks = storage.get_storage().read(file.storage_key, answer.start, answer.end)
    return StreamingResponse(
        chunks, status_code=answer.status, headers=answer.headers, media_type=file.content_type
    )
