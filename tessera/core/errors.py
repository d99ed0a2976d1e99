"""The error family raised by every layer, and the one envelope they all become.

ApiError (status, code)
├── BadRequest              400 BAD_REQUEST
├── AuthenticationFailed    401 AUTHENTICATION_FAILED (+ WWW-Authenticate)
├── MfaRequired             401 MFA_REQUIRED (+ WWW-Authenticate; a second factor is needed)
├── PermissionDenied        403 PERMISSION_DENIED
├── NotFound                404 RESOURCE_NOT_FOUND
├── MethodNotAllowed        405 METHOD_NOT_ALLOWED (+ Allow)
├── Conflict                409 CONFLICT
├── PreconditionFailed      412 PRECONDITION_FAILED
├── PayloadTooLarge         413 PAYLOAD_TOO_LARGE
├── UnsupportedMediaType    415 UNSUPPORTED_MEDIA_TYPE
├── ValidationFailed        422 VALIDATION_ERROR (one detail per field)
├── IdempotencyKeyReused    422 IDEMPOTENCY_KEY_REUSED
├── AccountLocked           423 ACCOUNT_LOCKED (+ Retry-After)
├── RateLimited             429 RATE_LIMIT_EXCEEDED (+ Retry-After)
├── ServiceUnavailable      503 SERVICE_UNAVAILABLE
└── InternalError           500 INTERNAL_ERROR (never carries internals)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from tessera.core.request_context import current_request_id

JSON = "application/json"


@dataclass(frozen=True)
class Detail:
    field: str
    code: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "code": self.code, "message": self.message}


class ApiError(Exception):
    """Base of every error the API answers with; subclasses fix `status` and `code`."""

    status = 500
    code = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        details: list[Detail] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details or [])
        self.headers = dict(headers or {})

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


class BadRequest(ApiError):
    status, code = 400, "BAD_REQUEST"


class AuthenticationFailed(ApiError):
    status, code = 401, "AUTHENTICATION_FAILED"


class MfaRequired(ApiError):
    status, code = 401, "MFA_REQUIRED"


class PermissionDenied(ApiError):
    status, code = 403, "PERMISSION_DENIED"


class NotFound(ApiError):
    status, code = 404, "RESOURCE_NOT_FOUND"


class MethodNotAllowed(ApiError):
    status, code = 405, "METHOD_NOT_ALLOWED"


class Conflict(ApiError):
    status, code = 409, "CONFLICT"


class PreconditionFailed(ApiError):
    status, code = 412, "PRECONDITION_FAILED"


class PayloadTooLarge(ApiError):
    status, code = 413, "PAYLOAD_TOO_LARGE"


class UnsupportedMediaType(ApiError):
    status, code = 415, "UNSUPPORTED_MEDIA_TYPE"


class RangeNotSatisfiable(ApiError):
    status, code = 416, "RANGE_NOT_SATISFIABLE"


class ValidationFailed(ApiError):
    status, code = 422, "VALIDATION_ERROR"


class IdempotencyKeyReused(ApiError):
    status, code = 422, "IDEMPOTENCY_KEY_REUSED"


class AccountLocked(ApiError):
    status, code = 423, "ACCOUNT_LOCKED"


class RateLimited(ApiError):
    status, code = 429, "RATE_LIMIT_EXCEEDED"


class InternalError(ApiError):
    status, code = 500, "INTERNAL_ERROR"


class ServiceUnavailable(ApiError):
    status, code = 503, "SERVICE_UNAVAILABLE"


def envelope(
    code: str, message: str, details: list[Detail] | None = None, request_id: str | None = None
) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "details": [d.as_dict() for d in details or []],
            "request_id": request_id or current_request_id(),
        }
    }


def envelope_bytes(error: ApiError) -> bytes:
    return orjson.dumps(envelope(error.code, error.message, error.details))
