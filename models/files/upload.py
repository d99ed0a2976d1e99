"""A multipart upload read as it arrives: the `file` part goes to storage chunk by chunk, hashed
and counted on the way; the other fields are small and read whole.

The first `HEAD` bytes of the file are held back until its type is known: `filetype` reads the
signature, and the declared type (the part's `Content-Type`) must agree with it: bytes with a
signature must be what they are declared as, a type that always has one (PNG, PDF, ZIP, …) needs
it, and a text type must be UTF-8 without NUL. The type must also be one the purpose accepts
(`TESSERA_FILES_ALLOWED_TYPES`). Any refusal aborts the storage write, so nothing is kept.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import filetype
import orjson
from python_multipart.multipart import MultipartParser, parse_options_header

from models.files import storage as stores
from models.files.records import PURPOSES, storage_key
from tessera.core.errors import (
    BadRequest,
    Detail,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from tessera.core.ids import new_id
from tessera.core.settings import Settings, get_settings

HEAD = 8192  # bytes sniffed (filetype reads 261) and checked as text
FIELD_LIMIT = 16384  # `purpose` and `metadata`
# Headers and boundaries around the parts, beyond the file's own bytes.
ENVELOPE_LIMIT = 1024 * 1024

_SIGNED = {t.mime for t in filetype.types} - {"application/octet-stream"}
_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "image/apng": "image/png",
    "application/x-zip-compressed": "application/zip",
    "application/x-pdf": "application/pdf",
    "application/x-msdos-program": "application/x-msdownload",
    "application/x-dosexec": "application/x-msdownload",
}
_UNKNOWN = "application/octet-stream"


@dataclass
class Received:
    """An upload whose bytes are in storage (committed) and whose row is yet to be written."""

    file_id: str
    storage_key: str
    filename: str
    content_type: str
    size: int
    sha256: str
    purpose: str
    metadata: dict[str, str]


def _canonical(media_type: str | None) -> str | None:
    if not media_type:
        return None
    base = media_type.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base) or None


def _is_text_type(media_type: str) -> bool:
    return (
        media_type.startswith("text/")
        or media_type in ("application/json", "application/xml", "application/csv")
        or media_type.endswith(("+json", "+xml"))
    )


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _refused(message: str, code: str, hint: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(message, [Detail("file", code, hint)])


def effective_type(declared: str | None, head: bytes) -> str:
    """The type the file is stored with: the declared one when the bytes agree, the sniffed one
    when none (or `application/octet-stream`) was declared; 415 when they disagree."""
    declared = _canonical(declared)
    kind = filetype.guess(head) if head else None
    sniffed = _canonical(kind.mime) if kind else None
    if declared in (None, _UNKNOWN):
        return sniffed or _UNKNOWN
    if sniffed is not None:
        if sniffed != declared:
            raise _refused(
                f"The file is declared as {declared} but its bytes are {sniffed}.",
                "TYPE_MISMATCH",
                "Upload the file with the type its bytes have.",
            )
        return declared
    if declared in _SIGNED:
        raise _refused(
            f"The file is declared as {declared} but its bytes are not.",
            "TYPE_MISMATCH",
            "Upload the file with the type its bytes have.",
        )
    if _is_text_type(declared) and not _looks_like_text(head):
        raise _refused(
            f"The file is declared as {declared} but is not UTF-8 text.",
            "TYPE_MISMATCH",
            "Send text as UTF-8, or declare the type its bytes have.",
        )
    return declared


def check_allowed(purpose: str, media_type: str, settings: Settings) -> None:
    patterns = settings.files_allowed_types.get(purpose, [])
    family = media_type.split("/", 1)[0] + "/*"
    if media_type not in patterns and family not in patterns:
        raise _refused(
            f"Files of type {media_type} are not accepted for the purpose {purpose!r}.",
            "TYPE_NOT_ALLOWED",
            f"Accepted: {', '.join(patterns) or 'none'}.",
        )


def safe_filename(raw: str | None) -> str:
    """The name without directories, control characters or surrounding blanks; at most 255
    characters; `file` when nothing is left."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(
        c for c in unicodedata.normalize("NFC", name) if unicodedata.category(c)[0] != "C"
    )
    name = name.strip()
    return name[:255] if name.strip(".") else "file"


def _metadata(text: str | None) -> dict[str, str]:
    if text is None or not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    problem = None
    if not isinstance(value, dict):
        problem = 'Send a JSON object, e.g. {"ticket": "T-1042"}.'
    elif len(value) > 20:
        problem = "At most 20 keys."
    elif any(not 1 <= len(k) <= 40 for k in value):
        problem = "Keys have 1 to 40 characters."
    elif any(not isinstance(v, str) or len(v) > 500 or "\x00" in v for v in value.values()):
        problem = "Values are strings of at most 500 characters."
    if problem:
        raise ValidationFailed(
            "The metadata is invalid.", [Detail("metadata", "INVALID_VALUE", problem)]
        )
    return value


def _text(field_name: str, raw: bytearray) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValidationFailed(
            "A form field is not UTF-8.", [Detail(field_name, "INVALID_ENCODING", "Send UTF-8.")]
        ) from None
    if "\x00" in text:
        raise ValidationFailed(
            "A form field contains NUL.", [Detail(field_name, "INVALID_CHARACTER", "No NUL.")]
        )
    return text


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _Events:
    """python-multipart's callbacks, collected as a list of events per chunk written: the parser
    is synchronous, storage is not."""

    def __init__(self) -> None:
        self.events: list[tuple] = []
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict:
        def on_part_begin() -> None:
            self._headers = {}

        def on_header_field(data: bytes, start: int, end: int) -> None:
            self._field += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            self._value += data[start:end]

        def on_header_end() -> None:
            self._headers[bytes(self._field).lower()] = bytes(self._value)
            self._field, self._value = bytearray(), bytearray()

        def on_headers_finished() -> None:
            self.events.append(("headers", self._headers))

        def on_part_data(data: bytes, start: int, end: int) -> None:
            self.events.append(("data", bytes(data[start:end])))

        def on_part_end() -> None:
            self.events.append(("end",))

        return {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        }

    def take(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


class _FileSink:
    def __init__(self, writer: stores.Writer, declared: str | None, limit: int) -> None:
        self.writer, self.declared, self.limit = writer, declared, limit
        self.head = bytearray()
        self.content_type: str | None = None
        self.digest = hashlib.sha256()
        self.size = 0

    async def write(self, chunk: bytes, purpose: str | None, settings: Settings) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(f"The file exceeds {self.limit} bytes.")
        self.digest.update(chunk)
        if self.content_type is None:
            self.head += chunk
            if len(self.head) < HEAD:
                return
            await self._typed(purpose, settings)
            return
        await self.writer.write(chunk)

    async def _typed(self, purpose: str | None, settings: Settings) -> None:
        self.content_type = effective_type(self.declared, bytes(self.head[:HEAD]))
        if purpose is not None:
            check_allowed(purpose, self.content_type, settings)
        head, self.head = bytes(self.head), bytearray()
        await self.writer.write(head)

    async def finish(self, purpose: str | None, settings: Settings) -> None:
        if self.content_type is None:
            await self._typed(purpose, settings)


async def receive(
    *,
    org_id: str,
    content_type: str | None,
    body: AsyncIterator[bytes],
    settings: Settings | None = None,
) -> Received:
    """Read a `multipart/form-data` upload from `body`, storing the file's bytes as they come
    (committed to storage when everything checked out, aborted otherwise)."""
    settings = settings or get_settings()
    media, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if media != b"multipart/form-data" or not boundary:
        raise UnsupportedMediaType("Upload files as multipart/form-data with a boundary.")
    file_id = new_id("fil")
    key = storage_key(org_id, file_id)
    store = stores.get_storage()
    events = _Events()
    parser = MultipartParser(boundary, events.callbacks())
    fields: dict[str, str] = {}
    part: _Part | None = None
    sink: _FileSink | None = None
    filename: str | None = None
    writer = await store.writer(key)
    seen, limit = 0, settings.files_max_bytes + ENVELOPE_LIMIT
    committed = False
    try:
        async for chunk in body:
            seen += len(chunk)
            if seen > limit:
                raise PayloadTooLarge(f"The file exceeds {settings.files_max_bytes} bytes.")
            try:
                parser.write(chunk)
            except Exception as exc:  # python-multipart's parse errors
                raise BadRequest(f"The multipart body is malformed: {exc}.") from None
            for event in events.take():
                if event[0] == "headers":
                    part = _Part(headers=event[1])
                    disposition, options = parse_options_header(
                        part.headers.get(b"content-disposition", b"")
                    )
                    part.name = options.get(b"name", b"").decode("utf-8", "replace")
                    if disposition != b"form-data" or not part.name:
                        raise BadRequest(
                            "Every part needs `Content-Disposition: form-data; name=…`."
                        )
                    if part.name == "file":
                        if sink is not None:
                            raise ValidationFailed(
                                "Send one file per upload.",
                                [Detail("file", "TOO_MANY_ITEMS", "One `file` part only.")],
                            )
                        raw_name = options.get(b"filename")
                        filename = _decode_name(raw_name)
                        declared = part.headers.get(b"content-type", b"").decode("latin-1")
                        sink = _FileSink(writer, declared, settings.files_max_bytes)
                    elif part.name not in ("purpose", "metadata"):
                        raise ValidationFailed(
                            "The upload has an unknown field.",
                            [
                                Detail(
                                    part.name[:64],
                                    "UNKNOWN_FIELD",
                                    "Send file, purpose and metadata only.",
                                )
                            ],
                        )
                    elif part.name in fields:
                        raise ValidationFailed(
                            "A field is given twice.",
                            [Detail(part.name, "REPEATED_PARAMETER", "Give this field once.")],
                        )
                elif event[0] == "data" and part is not None:
                    if part.name == "file" and sink is not None:
                        await sink.write(event[1], _purpose(fields), settings)
                    else:
                        part.data += event[1]
                        if len(part.data) > FIELD_LIMIT:
                            raise ValidationFailed(
                                "A form field is too long.",
                                [
                                    Detail(
                                        part.name or "body",
                                        "TOO_LONG",
                                        f"At most {FIELD_LIMIT} bytes.",
                                    )
                                ],
                            )
                elif event[0] == "end" and part is not None:
                    if part.name != "file":
                        fields[part.name or ""] = _text(part.name or "body", part.data)
                    part = None
        parser.finalize()
        if sink is None:
            raise ValidationFailed(
                "The upload has no file.",
                [Detail("file", "REQUIRED", "Send the file in a `file` part.")],
            )
        purpose = fields.get("purpose", "attachment")
        if purpose not in PURPOSES:
            raise ValidationFailed(
                "The purpose is unknown.",
                [Detail("purpose", "INVALID_VALUE", f"One of: {', '.join(PURPOSES)}.")],
            )
        metadata = _metadata(fields.get("metadata"))
        await sink.finish(purpose, settings)
        check_allowed(purpose, sink.content_type or _UNKNOWN, settings)
        await writer.commit()
        committed = True
    finally:
        if not committed:
            with contextlib.suppress(Exception):
                await writer.abort()
    return Received(
        file_id=file_id,
        storage_key=key,
        filename=safe_filename(filename),
        content_type=sink.content_type or _UNKNOWN,
        size=sink.size,
        sha256=sink.digest.hexdigest(),
        purpose=purpose,
        metadata=metadata,
    )


def _purpose(fields: dict[str, str]) -> str | None:
    return fields.get("purpose") if fields.get("purpose") in PURPOSES else None


def _decode_name(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


@contextlib.asynccontextmanager
async def kept_only_if_recorded(received: Received):
    """The stored bytes of `received` are deleted again when the block (which writes its row)
    fails, so a refused or failed insert leaves nothing behind."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            await stores.get_storage().delete(received.storage_key)
        raise
