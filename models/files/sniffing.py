"""The type a file is stored with, read from its bytes and held to what the client declared.

`filetype` reads the signature of the first bytes. Bytes with a signature must be what they are
declared as; a declared type that always has one (PNG, PDF, ZIP, …) needs it; a declared text
type must be UTF-8 without NUL; no declared type (or `application/octet-stream`) takes the
sniffed one. The result must be one of the purpose's allowed types
(`TESSERA_FILES_ALLOWED_TYPES`). Every refusal is 415 with a `file` detail saying which rule.
"""

from __future__ import annotations

import codecs

import filetype

from tessera.core.errors import Detail, UnsupportedMediaType
from tessera.core.settings import Settings

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
UNKNOWN = "application/octet-stream"


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
    if declared in (None, UNKNOWN):
        return sniffed or UNKNOWN
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
