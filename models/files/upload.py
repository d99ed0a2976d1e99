"""A multipart upload read as it arrives: the `file` part goes to storage chunk by chunk, hashed
and counted on the way; the other fields are small and read whole.

The first `HEAD` bytes of the file are held back until its type is known (`sniffing`: the
declared type, the part's `Content-Type`, must agree with the bytes, and the purpose must accept
it). Any refusal, there or later, aborts the storage write, so nothing is kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson
from python_multipart.multipart import MultipartParser, parse_options_header

from models.files import storage as stores
from models.files.records import PURPOSES, storage_key
from models.files.sniffing import UNKNOWN, check_allowed, effective_type
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
    headers: dict[bytes, bytes]
    name: str
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


def size_limit(purpose: str | None, settings: Settings) -> int:
    """The largest file `purpose` takes (the deployment's limit while it is not yet known)."""
    per_purpose = settings.files_max_bytes_per_purpose.get(purpose or "")
    return min(settings.files_max_bytes, per_purpose or settings.files_max_bytes)


def _check_size(size: int, purpose: str | None, settings: Settings) -> None:
    limit = size_limit(purpose, settings)
    if size > limit:
        where = f" for the purpose {purpose!r}" if limit < settings.files_max_bytes else ""
        raise PayloadTooLarge(f"The file exceeds {limit} bytes{where}.")


class _FileSink:
    def __init__(self, writer: stores.Writer, declared: str | None) -> None:
        self.writer, self.declared = writer, declared
        self.head = bytearray()
        self.content_type: str | None = None
        self.digest = hashlib.sha256()
        self.size = 0

    async def write(self, chunk: bytes, purpose: str | None, settings: Settings) -> None:
        self.size += len(chunk)
        _check_size(self.size, purpose, settings)
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

    async def finish(self, purpose: str, settings: Settings) -> None:
        _check_size(self.size, purpose, settings)  # the purpose may have come after the file
        if self.content_type is None:
            await self._typed(purpose, settings)


def _invalid(message: str, field_name: str, code: str, hint: str) -> ValidationFailed:
    return ValidationFailed(message, [Detail(field_name[:64], code, hint)])


class _Form:
    """The parts of one upload as the parser reports them: the file to its sink, the other
    fields into `fields` (each part checked as soon as its headers are read)."""

    def __init__(self, writer: stores.Writer, settings: Settings) -> None:
        self.writer, self.settings = writer, settings
        self.fields: dict[str, str] = {}
        self.part: _Part | None = None
        self.sink: _FileSink | None = None
        self.filename: str | None = None

    async def handle(self, event: tuple) -> None:
        if event[0] == "headers":
            self._begin(event[1])
        elif event[0] == "data" and self.part is not None:
            await self._data(event[1])
        elif event[0] == "end" and self.part is not None:
            if self.part.name != "file":
                self.fields[self.part.name] = _text(self.part.name, self.part.data)
            self.part = None

    def _begin(self, headers: dict[bytes, bytes]) -> None:
        disposition, options = parse_options_header(headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if disposition != b"form-data" or not name:
            raise BadRequest("Every part needs `Content-Disposition: form-data; name=…`.")
        if name == "file":
            if self.sink is not None:
                raise _invalid("Send one file per upload.", "file", "TOO_MANY_ITEMS", "One only.")
            self.filename = _decode_name(options.get(b"filename"))
            declared = headers.get(b"content-type", b"").decode("latin-1")
            self.sink = _FileSink(self.writer, declared)
        elif name not in ("purpose", "metadata"):
            raise _invalid(
                "The upload has an unknown field.",
                name,
                "UNKNOWN_FIELD",
                "Send file, purpose and metadata only.",
            )
        elif name in self.fields:
            raise _invalid("A field is given twice.", name, "REPEATED_PARAMETER", "Give it once.")
        self.part = _Part(headers=headers, name=name)

    async def _data(self, chunk: bytes) -> None:
        part = self.part
        if part.name == "file":
            await self.sink.write(chunk, _purpose(self.fields), self.settings)
            return
        part.data += chunk
        if len(part.data) > FIELD_LIMIT:
            raise _invalid(
                "A form field is too long.", part.name, "TOO_LONG", f"At most {FIELD_LIMIT} bytes."
            )

    async def finish(self) -> tuple[_FileSink, str, dict[str, str]]:
        """The file, its purpose and metadata, every check passed."""
        if self.sink is None:
            raise _invalid(
                "The upload has no file.", "file", "REQUIRED", "Send the file in a `file` part."
            )
        purpose = self.fields.get("purpose", "attachment")
        if purpose not in PURPOSES:
            raise _invalid(
                "The purpose is unknown.",
                "purpose",
                "INVALID_VALUE",
                f"One of: {', '.join(PURPOSES)}.",
            )
        metadata = _metadata(self.fields.get("metadata"))
        await self.sink.finish(purpose, self.settings)
        check_allowed(purpose, self.sink.content_type or UNKNOWN, self.settings)
        return self.sink, purpose, metadata


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
    writer = await stores.get_storage().writer(key)
    events, form = _Events(), _Form(writer, settings)
    parser = MultipartParser(boundary, events.callbacks())
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
                await form.handle(event)
        parser.finalize()
        sink, purpose, metadata = await form.finish()
        await writer.commit()
        committed = True
    finally:
        if not committed:
            with contextlib.suppress(Exception):
                await writer.abort()
    return Received(
        file_id=file_id,
        storage_key=key,
        filename=safe_filename(form.filename),
        content_type=sink.content_type or UNKNOWN,
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
