"""Files through HTTP: upload (streamed, sniffed, limited), list, metadata, content with ranges
and conditional requests, delete with the bytes removed by a job, tenant isolation, temporary
links, and the S3 backend against moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from models.files import links, storage
from tessera.core.settings import get_settings
from tests.support.factories import PASSWORD, Account, login, new_member, signed_in
from tests.support.services import free_port, wait_for_http

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 500


async def upload(
    client,
    account: Account,
    data: bytes = PNG,
    *,
    filename: str = "logo.png",
    content_type: str | None = "image/png",
    **fields: str,
):
    part = (filename, data, content_type) if content_type else (filename, data)
    return await client.post(
        "/v1/files", files={"file": part}, data=fields, headers=account.headers
    )


async def uploaded(client, account: Account, data: bytes = PNG, **kwargs) -> dict:
    response = await upload(client, account, data, **kwargs)
    assert response.status_code == 201, response.text
    return response.json()["data"]


def stored_path(file: dict) -> Path:
    return get_settings().data_dir / "files" / file["org_id"] / file["id"]


async def eventually(condition, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(0.1)
    return False


async def test_upload_stores_the_bytes_and_describes_them(client):
    owner = await signed_in(client)
    response = await upload(client, owner, purpose="attachment", metadata='{"ticket": "T-1"}')
    assert response.status_code == 201, response.text
    file = response.json()["data"]
    assert response.headers["location"] == f"/v1/files/{file['id']}"
    assert file["id"].startswith("fil_")
    assert file["org_id"] == owner.organization["id"]
    assert file["owner_id"] == owner.user["id"]
    assert (file["filename"], file["content_type"], file["purpose"]) == (
        "logo.png",
        "image/png",
        "attachment",
    )
    assert file["size"] == len(PNG) and file["sha256"] == hashlib.sha256(PNG).hexdigest()
    assert file["metadata"] == {"ticket": "T-1"}
    assert stored_path(file).read_bytes() == PNG

    got = await client.get(f"/v1/files/{file['id']}", headers=owner.headers)
    assert got.status_code == 200 and got.json()["data"] == file
    again = await client.get(
        f"/v1/files/{file['id']}", headers={**owner.headers, "If-None-Match": got.headers["etag"]}
    )
    assert again.status_code == 304

    events = await client.get("/v1/events", headers=owner.headers)
    assert "file.created" in [event["type"] for event in events.json()["data"]]


async def test_metadata_may_come_as_a_json_part(client):
    owner = await signed_in(client)
    response = await client.post(
        "/v1/files",
        files=[
            ("metadata", (None, b'{"source": "scanner"}', "application/json")),
            ("file", ("logo.png", PNG, "image/png")),
        ],
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["data"]["metadata"] == {"source": "scanner"}


async def test_a_part_without_a_type_takes_the_type_of_its_bytes(client):
    owner = await signed_in(client)
    file = await uploaded(client, owner, content_type=None, filename="../../etc/logo")
    assert file["content_type"] == "image/png"
    assert file["filename"] == "logo"  # no directories
    text = await uploaded(
        client, owner, b"id,name\n1,Ada\n", filename="a.csv", content_type="text/csv"
    )
    assert text["content_type"] == "text/csv"


async def test_list_filters_and_pages(client):
    owner = await signed_in(client)
    editor_email = await new_member(client, owner, role="editor")
    editor = await login(client, editor_email)
    editor_headers = {"Authorization": f"Bearer {editor['access_token']}"}
    mine = [await uploaded(client, owner) for _ in range(3)]
    theirs = await client.post(
        "/v1/files",
        files={"file": ("data.csv", b"a,b\n1,2\n", "text/csv")},
        data={"purpose": "import"},
        headers=editor_headers,
    )
    assert theirs.status_code == 201, theirs.text

    listed = await client.get("/v1/files", params={"limit": 2}, headers=owner.headers)
    body = listed.json()
    assert listed.status_code == 200 and body["total"] == 4 and len(body["data"]) == 2
    rest = await client.get(
        "/v1/files", params={"limit": 2, "cursor": body["next_cursor"]}, headers=owner.headers
    )
    seen = [f["id"] for f in body["data"] + rest.json()["data"]]
    assert sorted(seen) == sorted([f["id"] for f in mine] + [theirs.json()["data"]["id"]])

    imports = await client.get("/v1/files", params={"purpose": "import"}, headers=owner.headers)
    assert [f["id"] for f in imports.json()["data"]] == [theirs.json()["data"]["id"]]
    by_owner = await client.get(
        "/v1/files", params={"owner_id": owner.user["id"]}, headers=owner.headers
    )
    assert {f["id"] for f in by_owner.json()["data"]} == {f["id"] for f in mine}


async def test_content_is_streamed_with_its_headers(client):
    owner = await signed_in(client)
    file = await uploaded(client, owner, filename="Ünïcode report.png")
    response = await client.get(f"/v1/files/{file['id']}/content", headers=owner.headers)
    assert response.status_code == 200 and response.content == PNG
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(PNG))
    assert response.headers["etag"] == f'"{file["sha256"]}"'
    assert response.headers["accept-ranges"] == "bytes"
    assert response.headers["content-disposition"] == (
        'attachment; filename="Unicode report.png"; '
        "filename*=UTF-8''%C3%9Cn%C3%AFcode%20report.png"
    )


async def test_ranges_and_conditional_downloads(client):
    owner = await signed_in(client)
    file = await uploaded(client, owner)
    url, size = f"/v1/files/{file['id']}/content", len(PNG)

    first = await client.get(url, headers={**owner.headers, "Range": "bytes=0-7"})
    assert first.status_code == 206 and first.content == PNG[:8]
    assert first.headers["content-range"] == f"bytes 0-7/{size}"
    assert first.headers["content-length"] == "8"
    tail = await client.get(url, headers={**owner.headers, "Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == PNG[-10:]
    rest = await client.get(url, headers={**owner.headers, "Range": f"bytes={size - 3}-"})
    assert rest.status_code == 206 and rest.content == PNG[-3:]

    past = await client.get(url, headers={**owner.headers, "Range": f"bytes={size}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{size}"
    assert past.json()["error"]["code"] == "RANGE_NOT_SATISFIABLE"

    stale = await client.get(
        url, headers={**owner.headers, "Range": "bytes=0-7", "If-Range": '"other"'}
    )
    assert stale.status_code == 200 and stale.content == PNG

    etag = first.headers["etag"]
    cached = await client.get(url, headers={**owner.headers, "If-None-Match": etag})
    assert cached.status_code == 304 and cached.content == b""
    assert cached.headers["etag"] == etag


async def test_delete_removes_the_row_and_then_the_bytes(client):
    owner = await signed_in(client)
    file = await uploaded(client, owner)
    assert stored_path(file).exists()
    deleted = await client.delete(f"/v1/files/{file['id']}", headers=owner.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/v1/files/{file['id']}", headers=owner.headers)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "RESOURCE_NOT_FOUND"

    async def bytes_removed() -> bool:
        return not stored_path(file).exists()

    assert await eventually(bytes_removed), "the job never removed the bytes"


async def test_deleting_the_organization_removes_its_files_bytes(client):
    owner = await signed_in(client)
    file = await uploaded(client, owner)
    url = f"/v1/organizations/{owner.organization['id']}"
    etag = (await client.get(url, headers=owner.headers)).headers["etag"]
    deleted = await client.delete(url, headers={**owner.headers, "If-Match": etag})
    assert deleted.status_code == 204, deleted.text

    async def bytes_removed() -> bool:
        return not stored_path(file).exists()

    assert await eventually(bytes_removed), "the cascade left the bytes behind"


async def test_erasing_a_user_removes_their_files_and_bytes(client):
    owner = await signed_in(client)
    email = await new_member(client, owner, role="editor")
    member = {"Authorization": f"Bearer {(await login(client, email))['access_token']}"}
    response = await client.post(
        "/v1/files", files={"file": ("a.png", PNG, "image/png")}, headers=member
    )
    file = response.json()["data"]
    erased = await client.request(
        "DELETE", "/v1/users/me?mode=hard", json={"password": PASSWORD}, headers=member
    )
    assert erased.status_code == 204, erased.text
    gone = await client.get(f"/v1/files/{file['id']}", headers=owner.headers)
    assert gone.status_code == 404

    async def bytes_removed() -> bool:
        return not stored_path(file).exists()

    assert await eventually(bytes_removed), "the erasure left the bytes behind"


async def test_only_the_uploader_or_an_admin_deletes(client):
    owner = await signed_in(client)
    editor = await login(client, await new_member(client, owner, role="editor"))
    viewer = await login(client, await new_member(client, owner, role="viewer"))
    as_editor = {"Authorization": f"Bearer {editor['access_token']}"}
    as_viewer = {"Authorization": f"Bearer {viewer['access_token']}"}
    file = await uploaded(client, owner)

    refused = await client.post(
        "/v1/files", files={"file": ("a.png", PNG, "image/png")}, headers=as_viewer
    )
    assert refused.status_code == 403
    assert (await client.get(f"/v1/files/{file['id']}", headers=as_viewer)).status_code == 200
    not_theirs = await client.delete(f"/v1/files/{file['id']}", headers=as_editor)
    assert not_theirs.status_code == 403 and not_theirs.json()["error"]["code"] == (
        "PERMISSION_DENIED"
    )
    own = await client.post(
        "/v1/files", files={"file": ("a.png", PNG, "image/png")}, headers=as_editor
    )
    own_id = own.json()["data"]["id"]
    assert (await client.delete(f"/v1/files/{own_id}", headers=as_editor)).status_code == 204
    assert (
        await client.delete(f"/v1/files/{file['id']}", headers=owner.headers)
    ).status_code == 204


async def test_another_tenants_file_is_not_found(client):
    owner, stranger = await signed_in(client), await signed_in(client)
    file = await uploaded(client, owner)
    for method, path in [
        ("GET", f"/v1/files/{file['id']}"),
        ("GET", f"/v1/files/{file['id']}/content"),
        ("DELETE", f"/v1/files/{file['id']}"),
        ("POST", f"/v1/files/{file['id']}/links"),
    ]:
        response = await client.request(method, path, headers=stranger.headers)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "RESOURCE_NOT_FOUND"
    listed = await client.get("/v1/files", headers=stranger.headers)
    assert file["id"] not in [f["id"] for f in listed.json()["data"]]


def org_files(account: Account) -> list[Path]:
    folder = get_settings().data_dir / "files" / account.organization["id"]
    return sorted(folder.iterdir()) if folder.exists() else []


async def test_an_executable_renamed_png_is_refused_and_nothing_is_kept(client):
    owner = await signed_in(client)
    response = await upload(client, owner, EXE, filename="cat.png", content_type="image/png")
    assert response.status_code == 415, response.text
    error = response.json()["error"]
    assert error["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert error["details"][0]["code"] == "TYPE_MISMATCH"
    assert "application/x-msdownload" in error["message"]
    # Undeclared, it is what its bytes say, and no purpose accepts executables.
    undeclared = await upload(client, owner, EXE, filename="cat", content_type=None)
    assert undeclared.status_code == 415
    assert undeclared.json()["error"]["details"][0]["code"] == "TYPE_NOT_ALLOWED"
    # A declared signature type whose bytes have none.
    fake = await upload(
        client, owner, b"just text" * 100, filename="x.pdf", content_type="application/pdf"
    )
    assert fake.status_code == 415
    listed = await client.get("/v1/files", headers=owner.headers)
    assert listed.json()["total"] == 0 and org_files(owner) == []


async def test_types_a_purpose_does_not_accept_are_refused(client):
    owner = await signed_in(client)
    response = await upload(
        client, owner, b"hello", filename="a.txt", content_type="text/plain", purpose="avatar"
    )
    assert response.status_code == 415
    assert response.json()["error"]["details"][0]["code"] == "TYPE_NOT_ALLOWED"
    # The purpose after the file part: refused all the same, once it is known.
    late = await client.post(
        "/v1/files",
        files=[("file", ("a.txt", b"hello", "text/plain")), ("purpose", (None, b"avatar"))],
        headers=owner.headers,
    )
    assert late.status_code == 415
    assert org_files(owner) == []


async def test_uploads_past_the_limit_are_413_and_nothing_is_kept(client, monkeypatch):
    owner = await signed_in(client)
    monkeypatch.setattr(get_settings(), "files_max_bytes", 64 * 1024)
    response = await upload(client, owner, PNG * 100)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert org_files(owner) == []

    monkeypatch.setattr(get_settings(), "files_max_bytes_per_purpose", {"avatar": 4096})
    avatar = await upload(client, owner, PNG * 5, purpose="avatar")
    assert avatar.status_code == 413
    assert "for the purpose 'avatar'" in avatar.json()["error"]["message"]
    # Known only after the file part: refused all the same.
    late = await client.post(
        "/v1/files",
        files=[("file", ("a.png", PNG * 5, "image/png")), ("purpose", (None, b"avatar"))],
        headers=owner.headers,
    )
    assert late.status_code == 413
    assert (await upload(client, owner, PNG * 5)).status_code == 201  # attachments may
    assert len(org_files(owner)) == 1


async def test_uploads_larger_than_the_json_body_limit_stream_through(client):
    owner = await signed_in(client)
    data = PNG + b"\x00" * (get_settings().max_body_bytes + 1024)
    file = await uploaded(client, owner, data)
    assert file["size"] == len(data) and file["sha256"] == hashlib.sha256(data).hexdigest()
    ranged = await client.get(
        f"/v1/files/{file['id']}/content", headers={**owner.headers, "Range": "bytes=-5"}
    )
    assert ranged.content == data[-5:]


async def test_a_retried_upload_with_an_idempotency_key_is_answered_once(client):
    owner = await signed_in(client)
    data = PNG + b"\x00" * (3 * 1024 * 1024)  # past what the key's spool keeps in memory
    headers = {
        **owner.headers,
        "Idempotency-Key": "upload-1",
        # Retries resend the same bytes, boundary included.
        "Content-Type": "multipart/form-data; boundary=tessera-test-boundary",
    }

    async def send(body: bytes):
        return await client.post(
            "/v1/files", files={"file": ("big.png", body, "image/png")}, headers=headers
        )

    first = await send(data)
    assert first.status_code == 201, first.text
    again = await send(data)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    listed = await client.get("/v1/files", headers=owner.headers)
    assert listed.json()["total"] == 1
    other = await send(data + b"more")
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"


async def test_malformed_uploads_are_4xx(client):
    owner = await signed_in(client)
    no_file = await client.post(
        "/v1/files", data={"purpose": "attachment"}, files={"x": ("a", b"a")}, headers=owner.headers
    )
    assert no_file.status_code == 422
    missing = await client.post(
        "/v1/files", files=[("purpose", (None, b"attachment"))], headers=owner.headers
    )
    assert missing.status_code == 422
    assert missing.json()["error"]["details"][0] == {
        "field": "file",
        "code": "REQUIRED",
        "message": "Send the file in a `file` part.",
    }
    metadata = await upload(client, owner, metadata="[1, 2]")
    assert metadata.status_code == 422
    assert metadata.json()["error"]["details"][0]["field"] == "metadata"
    purpose = await upload(client, owner, purpose="nonsense")
    assert purpose.status_code == 422
    json_body = await client.post("/v1/files", json={"file": "x"}, headers=owner.headers)
    assert json_body.status_code == 415
    assert org_files(owner) == []


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_links_download_without_credentials_until_they_expire(client):
    owner = await signed_in(client)
    file = await uploaded(client, owner)
    made = await client.post(
        f"/v1/files/{file['id']}/links", json={"expires_in": 120}, headers=owner.headers
    )
    assert made.status_code == 201, made.text
    link = made.json()["data"]
    assert link["url"].startswith(get_settings().public_url)
    target = _path_and_query(link["url"])

    anonymous = await client.get(target)
    assert anonymous.status_code == 200 and anonymous.content == PNG
    assert anonymous.headers["etag"] == f'"{file["sha256"]}"'
    ranged = await client.get(target, headers={"Range": "bytes=0-3"})
    assert ranged.status_code == 206 and ranged.content == PNG[:4]

    other = await uploaded(client, owner)
    carried = await client.get(target.replace(file["id"], other["id"]))
    assert carried.status_code == 403
    tampered = await client.get(target[:-2] + ("AA" if not target.endswith("AA") else "BB"))
    assert tampered.status_code == 403

    expired = links.create(file_id=file["id"], expires_in=60, now=time.time() - 120)
    refused = await client.get(_path_and_query(expired["url"]))
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "This link has expired; ask for a new one."

    default = await client.post(f"/v1/files/{file['id']}/links", headers=owner.headers)
    assert default.status_code == 201
    audit = await client.get(
        "/v1/audit", params={"action": "file.link_created"}, headers=owner.headers
    )
    assert audit.status_code == 200, audit.text
    assert len(audit.json()["data"]) == 2  # who handed out access, and until when

    await client.delete(f"/v1/files/{file['id']}", headers=owner.headers)
    assert (await client.get(target)).status_code == 404


@pytest.fixture(scope="module")
def s3_server():
    """moto's standalone S3 server on a free loopback port, with a bucket."""
    import boto3

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_for_http(f"{endpoint}/moto-api/")
        credentials = {
            "endpoint_url": endpoint,
            "region_name": "us-east-1",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        boto3.client("s3", **credentials).create_bucket(Bucket="tessera-files")
        yield credentials
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_storage(s3_server, monkeypatch):
    settings = get_settings().model_copy(
        update={
            "files_s3_bucket": "tessera-files",
            "files_s3_endpoint": s3_server["endpoint_url"],
            "files_s3_region": s3_server["region_name"],
            "files_s3_access_key": s3_server["aws_access_key_id"],
            "files_s3_secret_key": s3_server["aws_secret_access_key"],
        }
    )
    backend = storage.from_settings(settings)
    assert isinstance(backend, storage.S3Storage)
    monkeypatch.setattr(storage, "get_storage", lambda: backend)
    return backend


def _objects(backend: storage.S3Storage, prefix: str) -> list[str]:
    listed = backend.client.list_objects_v2(Bucket=backend.bucket, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


async def test_the_s3_backend_stores_serves_and_deletes(client, s3_storage):
    owner = await signed_in(client)
    # Larger than one multipart part, so the multipart upload path runs too.
    data = PNG + bytes(range(256)) * (storage.S3_PART // 256 + 1000)
    big = await uploaded(client, owner, data)
    small = await uploaded(client, owner)
    assert sorted(_objects(s3_storage, owner.organization["id"])) == sorted(
        f"{f['org_id']}/{f['id']}" for f in (big, small)
    )
    assert not stored_path(big).exists()  # not on the local disk

    whole = await client.get(f"/v1/files/{big['id']}/content", headers=owner.headers)
    assert whole.status_code == 200 and hashlib.sha256(whole.content).hexdigest() == big["sha256"]
    part = await client.get(
        f"/v1/files/{small['id']}/content", headers={**owner.headers, "Range": "bytes=8-15"}
    )
    assert part.status_code == 206 and part.content == PNG[8:16]

    refused = await upload(client, owner, EXE, filename="x.png")
    assert refused.status_code == 415

    for file in (big, small):
        assert (
            await client.delete(f"/v1/files/{file['id']}", headers=owner.headers)
        ).status_code == 204

    async def emptied() -> bool:
        return _objects(s3_storage, owner.organization["id"]) == []

    assert await eventually(emptied), "the job never removed the objects"
