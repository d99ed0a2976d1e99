"""What a download answers, decided before any byte is read: the status (200, 206 or 304; 416
as an error), the headers, and the byte range to stream.

Ranges follow RFC 9110 §14: one range per request (a list of several answers the whole file,
which the RFC allows), `If-Range` with another ETag answers the whole file, and a range that
starts past the end is 416 with `Content-Range: bytes */size`. The file name goes out as RFC 6266
asks: an ASCII fallback in `filename` and the exact name, percent-encoded UTF-8, in `filename*`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import quote

from models.files.records import File
from tessera.core.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    start: int = 0
    end: int = -1  # inclusive; -1 with start 0: nothing to send


def etag(file: File) -> str:
    return f'"{file.sha256}"'


def content_disposition(filename: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", filename).encode("ascii", "ignore").decode("ascii")
    ascii_name = re.sub(r"[^A-Za-z0-9._ ()+,=@~-]", "_", ascii_name).strip() or "file"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _etag_listed(header: str, tag: str) -> bool:
    if header.strip() == "*":
        return True
    return tag in {t.strip().removeprefix("W/") for t in header.split(",")}


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive range `header` asks for; None to send the whole file; 416 when none of it
    exists."""
    match = _RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None  # several ranges, or another unit: the whole file
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        length = int(last)
        if length == 0:
            raise _unsatisfiable(size)
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # invalid: ignored, as RFC 9110 says
    if start >= size:
        raise _unsatisfiable(size)
    return start, end


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    error = RangeNotSatisfiable(f"The range starts past the end of the file ({size} bytes).")
    error.headers["Content-Range"] = f"bytes */{size}"
    return error


def answer(
    file: File,
    *,
    if_none_match: str | None,
    range_header: str | None,
    if_range: str | None,
) -> Answer:
    tag = etag(file)
    headers = {
        "ETag": tag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(file.filename),
        "Cache-Control": "private, no-cache",
    }
    if if_none_match is not None and _etag_listed(if_none_match, tag):
        return Answer(304, {"ETag": tag})
    wanted = None
    if range_header and (if_range is None or if_range.strip() == tag):
        wanted = _byte_range(range_header, file.size)
    if wanted is None:
        headers["Content-Length"] = str(file.size)
        return Answer(200, headers, 0, file.size - 1)
    start, end = wanted
    headers["Content-Range"] = f"bytes {start}-{end}/{file.size}"
    headers["Content-Length"] = str(end - start + 1)
    return Answer(206, headers, start, end)
