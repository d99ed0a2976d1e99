"""The `files` table: what was stored, for which organization, by whom; and the services that
list, read, create and delete its rows (each with its audit entry and event, in the caller's
transaction).

A row's bytes are removed by `workers.files.delete_file_bytes`, queued by the table's delete
trigger (migration 0012) in the transaction that deletes the row, however it goes: this module's
`delete`, or a cascade from its owner or organization.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Column, Index
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from models.common.base import factory, get_in_org, id_field, rfc3339, timestamp_field, utcnow
from models.records import activity
from tessera.core.errors import NotFound, PermissionDenied
from tessera.core.permissions import ADMIN

if TYPE_CHECKING:
    from models.files.upload import Received

PURPOSES = ("attachment", "avatar", "import")
# The job that removes a deleted row's bytes (workers/files.py), named in the trigger too.
DELETE_BYTES_ACTOR = "delete_file_bytes"


class File(SQLModel, table=True):
    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_org_created", "org_id", "created_at"),
        Index("ix_files_owner", "owner_id"),
    )

    id: str = id_field("fil")
    org_id: str = Field(foreign_key="organizations.id", ondelete="CASCADE")
    # The uploader; a hard-deleted user's files go with them. Null for API keys.
    owner_id: str | None = Field(default=None, foreign_key="users.id", ondelete="CASCADE")
    filename: str = Field(max_length=255)
    content_type: str = Field(max_length=255)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    sha256: str = Field(max_length=64)
    purpose: str = Field(max_length=20)
    labels: dict = Field(
        default_factory=factory(dict), sa_column=Column("metadata", JSONB, nullable=False)
    )
    storage_key: str = Field(max_length=200)
    created_at: datetime = timestamp_field(default_factory=utcnow)


def storage_key(org_id: str, file_id: str) -> str:
    return f"{org_id}/{file_id}"


def public(file: File) -> dict:
    return {
        "id": file.id,
        "org_id": file.org_id,
        "owner_id": file.owner_id,
        "filename": file.filename,
        "content_type": file.content_type,
        "size": file.size,
        "sha256": file.sha256,
        "purpose": file.purpose,
        "metadata": file.labels,
        "created_at": rfc3339(file.created_at),
    }


def list_query(*, org_id: str, purpose: str | None = None, owner_id: str | None = None):
    stmt = select(File).where(File.org_id == org_id)
    if purpose:
        stmt = stmt.where(File.purpose == purpose)
    if owner_id:
        stmt = stmt.where(File.owner_id == owner_id)
    return stmt


async def get(*, session: AsyncSession, org_id: str, file_id: str) -> File:
    return await get_in_org(session, File, file_id, org_id=org_id, missing="No file with this id.")


async def get_for_link(*, session: AsyncSession, file_id: str) -> File:
    """The file a signed link names (the signature stands in for the tenant check)."""
    file = await session.get(File, file_id)
    if file is None:
        raise NotFound("No file with this id.")
    return file


async def create(
    *, session: AsyncSession, org_id: str, owner_id: str | None, received: Received
) -> File:
    file = File(
        id=received.file_id,
        org_id=org_id,
        owner_id=owner_id,
        filename=received.filename,
        content_type=received.content_type,
        size=received.size,
        sha256=received.sha256,
        purpose=received.purpose,
        labels=received.metadata,
        storage_key=received.storage_key,
    )
    session.add(file)
    await _record(
        session,
        "file.created",
        file,
        filename=file.filename,
        content_type=file.content_type,
        size=file.size,
        purpose=file.purpose,
    )
    return file


async def link_created(*, session: AsyncSession, file: File, expires_at: str) -> None:
    """A link lets anyone who holds it read the file: the audit log says who made one, until
    when."""
    await _record(session, "file.link_created", file, expires_at=expires_at)


def ensure_may_delete(file: File, *, permissions: set[str], user_id: str | None) -> None:
    if ADMIN in permissions or (user_id is not None and file.owner_id == user_id):
        return
    raise PermissionDenied("Only the file's uploader or an admin may delete this file.")


async def delete(*, session: AsyncSession, file: File) -> None:
    """The row and its event; the trigger queues its bytes' removal in this transaction."""
    await session.delete(file)
    await _record(session, "file.deleted", file, filename=file.filename)


async def _record(session: AsyncSession, action: str, file: File, **data) -> None:
    await activity.record(
        session=session,
        action=action,
        org_id=file.org_id,
        resource_type="file",
        resource_id=file.id,
        data=data,
    )
