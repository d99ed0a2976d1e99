"""Turn every exception that reaches Connexion's exception middleware into the error envelope.

Connexion pre-registers problem+json handlers for `ProblemException` and `Exception`, and Starlette
raises `HTTPException` for unknown routes and methods, so all three are replaced here.
"""

from __future__ import annotations

import logging
from functools import cache

import orjson
from connexion.exceptions import (
    NonConformingResponse,
    OAuthScopeProblem,
    ProblemException,
)
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from tessera.core.errors import (
    JSON,
    ApiError,
    AuthenticationFailed,
    BadRequest,
    InternalError,
    MethodNotAllowed,
    NotFound,
    PermissionDenied,
    UnsupportedMediaType,
    envelope_bytes,
)
from tessera.web.contract import get_contract

log = logging.getLogger("tessera.errors")

WWW_AUTHENTICATE = 'Bearer realm="tessera"'


OAUTH_JSON = "application/json;charset=UTF-8"
_OAUTH_BAD_REQUEST = "#/components/responses/OAuthBadRequest"


@cache
def _oauth_paths() -> frozenset[str]:
    """The endpoints OAuth client libraries call (token, revocation, introspection): their
    errors, whichever layer raises them, take RFC 6749's shape, which those libraries parse."""
    operations = get_contract().operations.values()
    return frozenset(
        op.path
        for op in operations
        if op.spec.get("responses", {}).get("400", {}).get("$ref") == _OAUTH_BAD_REQUEST
    )


def _oauth_code(status: int) -> str:
    if status == 401:
        return "invalid_client"
    return "server_error" if status >= 500 else "invalid_request"


def respond(request: ConnexionRequest, error: ApiError) -> ConnexionResponse:
    """`error` in the shape the path's clients expect: RFC 6749's under the OAuth endpoints,
    the envelope everywhere else."""
    if request.url.path not in _oauth_paths():
        return render(error)
    body = {"error": _oauth_code(error.status), "error_description": error.message}
    return ConnexionResponse(
        status_code=error.status,
        content_type=OAUTH_JSON,
        body=orjson.dumps(body),
        headers={**error.headers, "Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def render(error: ApiError) -> ConnexionResponse:
    headers = dict(error.headers)
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    return ConnexionResponse(
        status_code=error.status, body=envelope_bytes(error), mimetype=JSON, headers=headers
    )


async def api_error(request: ConnexionRequest, exc: ApiError) -> ConnexionResponse:
    if exc.status >= 500:
        log.error("request failed: %s", exc)
    return respond(request, exc)


def _from_problem(exc: ProblemException) -> ApiError:
    detail = exc.detail or exc.title or "The request could not be processed."
    if isinstance(exc, NonConformingResponse):
        # The handler broke the contract: log why, tell the client nothing internal.
        log.error("response does not conform to the spec: %s", exc.detail)
        return InternalError("An unexpected error occurred; quote the request id to support.")
    if exc.status == 401:
        return AuthenticationFailed("Authentication credentials are missing or invalid.")
    if exc.status == 403:
        return PermissionDenied(str(detail))
    if exc.status == 415:
        return UnsupportedMediaType(str(detail))
    if 400 <= exc.status < 500:
        return BadRequest(str(detail))
    log.error("problem %s: %s", exc.status, detail)
    return InternalError("An unexpected error occurred; quote the request id to support.")


async def problem(request: ConnexionRequest, exc: ProblemException) -> ConnexionResponse:
    return respond(request, _from_problem(exc))


async def http_error(request: ConnexionRequest, exc: HTTPException) -> ConnexionResponse:
    if isinstance(exc, OAuthScopeProblem):
        return render(PermissionDenied("The credentials lack a required scope."))
    if exc.status_code == 404:
        return render(NotFound("No resource at this path."))
    if exc.status_code == 405:
        allowed = get_contract().allowed_methods(request.url.path)
        return render(
            MethodNotAllowed(
                f"Method {request.method} is not allowed here.",
                headers={"Allow": ", ".join(allowed)},
            )
        )
    if exc.status_code == 403:
        return render(PermissionDenied(exc.detail or "Permission denied."))
    if exc.status_code < 500:
        return render(BadRequest(exc.detail or "Bad request."))
    return await unhandled(request, exc)


async def unhandled(request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    if isinstance(exc, UnicodeDecodeError):
        return respond(request, BadRequest("The request body is not valid UTF-8."))
    log.exception("unhandled exception", exc_info=exc)
    return respond(
        request, InternalError("An unexpected error occurred; quote the request id to support.")
    )


def register(app) -> None:
    app.add_error_handler(ApiError, api_error)
    app.add_error_handler(ProblemException, problem)
    app.add_error_handler(HTTPException, http_error)
    app.add_error_handler(Exception, unhandled)
