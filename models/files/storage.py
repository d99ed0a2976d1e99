"""Where file bytes live, behind one small interface: `writer` (streamed in, committed or
aborted), `read` (a byte range, streamed out) and `delete` (idempotent).

`LocalStorage` keeps them under `<TESSERA_DATA_DIR>/files/`; `S3Storage` in a bucket of any
S3-compatible store (AWS, MinIO, Ceph, moto's server in the tests), through boto3. boto3 blocks,
so its calls run in threads; so do file reads and writes, in chunks of `CHUNK` bytes, so that
neither backend holds a file whole in memory.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path
from typing import Protocol

from tessera.core.settings import Settings, get_settings

CHUNK = 1024 * 1024
# S3 multipart parts must be at least 5 MiB, the last excepted.
S3_PART = 8 * 1024 * 1024


class Writer(Protocol):
    async def write(self, chunk: bytes) -> None: ...
    async def commit(self) -> None: ...
    async def abort(self) -> None: ...


class Storage(Protocol):
    async def writer(self, key: str) -> Writer: ...
    def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        """Bytes `start` to `end` inclusive."""
        ...

    async def delete(self, key: str) -> None: ...


class _LocalWriter:
    """Writes to a hidden partial file beside the target, renamed into place on commit, so a
    reader never sees half a file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        self.buffer = bytearray()
        self.out = None

    async def _flush(self) -> None:
        if self.out is None:
            await asyncio.to_thread(self.path.parent.mkdir, parents=True, exist_ok=True)
            self.out = await asyncio.to_thread(self.partial.open, "wb")
        data, self.buffer = bytes(self.buffer), bytearray()
        await asyncio.to_thread(self.out.write, data)

    async def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        if len(self.buffer) >= CHUNK:
            await self._flush()

    async def commit(self) -> None:
        await self._flush()
        out = self.out
        await asyncio.to_thread(_close_synced, out)
        await asyncio.to_thread(self.partial.replace, self.path)

    async def abort(self) -> None:
        self.buffer = bytearray()
        if self.out is not None:
            await asyncio.to_thread(self.out.close)
            await asyncio.to_thread(self.partial.unlink, missing_ok=True)


def _close_synced(out) -> None:
    out.flush()
    os.fsync(out.fileno())
    out.close()


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"storage key {key!r} leaves the storage root")
        return path

    async def writer(self, key: str) -> _LocalWriter:
        return _LocalWriter(self._path(key))

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(self._path(key).open, "rb")
        try:
            await asyncio.to_thread(handle.seek, start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(handle.read, min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)


class _S3Writer:
    """A single PUT for a small file; a multipart upload (parts of `S3_PART` bytes) once the
    bytes outgrow one part, aborted on failure so no parts linger in the bucket."""

    def __init__(self, client, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict] = []

    async def _send_part(self) -> None:
        if self.upload_id is None:
            started = await asyncio.to_thread(
                self.client.create_multipart_upload, Bucket=self.bucket, Key=self.key
            )
            self.upload_id = started["UploadId"]
        data, self.buffer = bytes(self.buffer), bytearray()
        number = len(self.parts) + 1
        sent = await asyncio.to_thread(
            self.client.upload_part,
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
        )
        self.parts.append({"PartNumber": number, "ETag": sent["ETag"]})

    async def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        if len(self.buffer) >= S3_PART:
            await self._send_part()

    async def commit(self) -> None:
        if self.upload_id is None:
            data, self.buffer = bytes(self.buffer), bytearray()
            await asyncio.to_thread(
                self.client.put_object, Bucket=self.bucket, Key=self.key, Body=data
            )
            return
        if self.buffer:
            await self._send_part()
        await asyncio.to_thread(
            self.client.complete_multipart_upload,
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    async def abort(self) -> None:
        self.buffer = bytearray()
        if self.upload_id is not None:
            await asyncio.to_thread(
                self.client.abort_multipart_upload,
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
            )


class S3Storage:
    def __init__(self, settings: Settings) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = settings.files_s3_bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=settings.files_s3_endpoint,
            region_name=settings.files_s3_region,
            aws_access_key_id=settings.files_s3_access_key,
            aws_secret_access_key=settings.files_s3_secret_key,
            config=Config(retries={"max_attempts": 5, "mode": "standard"}),
        )

    async def writer(self, key: str) -> _S3Writer:
        return _S3Writer(self.client, self.bucket, key)

    async def read(self, key: str, start: int, end: int) -> AsyncIterator[bytes]:
        answer = await asyncio.to_thread(
            self.client.get_object, Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}"
        )
        body = answer["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(body.close)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=key)


def from_settings(settings: Settings) -> Storage:
    if settings.files_s3_bucket:
        return S3Storage(settings)
    return LocalStorage(settings.data_dir / "files")


@lru_cache(maxsize=1)
def get_storage() -> Storage:
    return from_settings(get_settings())
