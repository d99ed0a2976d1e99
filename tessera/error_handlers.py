"""Turn every exception that reaches Connexion's exception middleware into the error envelope.

Connexion pre-registers problem+json handlers for `ProblemException` and `Exception`, and Starlette
raises `HTTPException` for unknown routes and methods, so all three are replaced here.
"""

from __future__ import annotations

import logging

from connexion.exceptions import (
    NonConformingResponse,
    OAuthScopeProblem,
    ProblemException,
)
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from starlette.exceptions import HTTPException

from tessera.contract import get_contract
from tessera.errors import (
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

log = logging.getLogger("tessera.errors")

WWW_AUTHENTICATE = 'Bearer realm="tessera"'


def render(error: ApiError) -> ConnexionResponse:
    headers = dict(error.headers)
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", WWW_AUTHENTICATE)
    return ConnexionResponse(
        status_code=error.status, body=envelope_bytes(error), mimetype=JSON, headers=headers
    )


async def api_error(_request: ConnexionRequest, exc: ApiError) -> ConnexionResponse:
    if exc.status >= 500:
        log.error("request failed: %s", exc)
    return render(exc)


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


async def problem(_request: ConnexionRequest, exc: ProblemException) -> ConnexionResponse:
    return render(_from_problem(exc))


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


async def unhandled(_request: ConnexionRequest, exc: Exception) -> ConnexionResponse:
    if isinstance(exc, UnicodeDecodeError):
        return render(BadRequest("The request body is not valid UTF-8."))
    log.exception("unhandled exception", exc_info=exc)
    return render(InternalError("An unexpected error occurred; quote the request id to support."))


def register(app) -> None:
    app.add_error_handler(ApiError, api_error)
    app.add_error_handler(ProblemException, problem)
    app.add_error_handler(HTTPException, http_error)
    app.add_error_handler(Exception, unhandled)
