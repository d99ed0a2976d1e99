"""The FastAPI reference for `make bench`: the same work as Tessera for two operations.

GET /v1/users/me and POST /v1/projects authenticate with the same code (tessera.auth: ES256
verification, the session check and its cache), apply the same rate limit (tessera.web.ratelimit:
the caller's bucket, one Redis round trip, the X-RateLimit-* headers), then call the same service
functions as Tessera's handlers (handlers/users.get_me and handlers/projects.create_project:
each one statement committed on its own, the project's writing the project, its audit entry and
its event), and answer the same JSON with the same status and `Location`.
The server runs Tessera's lifespan, so the outbox relay publishes every project's event as it
does in Tessera. Only the framework around them differs: FastAPI + Pydantic instead of Connexion
driven by the OpenAPI document.

What Tessera still does on top, so its ratio is in the reference's favour: the request id, the
access log, metrics, security headers, the request size limits and the idempotency check.

`lean_app` leaves out the rate limit and the relay too: the reference as first written, kept so
that the cost of that work stays visible in the results.
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from models.identity import users
from models.platform import projects
from tessera.core.errors import ApiError, NotFound, PermissionDenied, envelope
from tessera.web import authentication as auth
from tessera.web import ratelimit
from tessera.web.app import lifespan

# The contract's ProjectTitle: not blank, no control characters.
_TITLE = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200, pattern=_TITLE)
    status: Literal["active", "archived"] = "active"
    owner_id: str | None = Field(default=None, pattern=r"^usr_[0-9A-Z]{26}$")


async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(envelope(exc.code, exc.message, exc.details), exc.status, exc.headers)


def build(*, same_work: bool) -> FastAPI:
    app = FastAPI(
        openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan if same_work else None
    )
    app.add_exception_handler(ApiError, _api_error)

    async def caller_of(
        request: Request, operation_id: str, permission: str | None = None
    ) -> tuple[auth.Principal, dict[str, str]]:
        """The caller, like Tessera's `x-permission` the permission the operation needs, and
        the rate limit's headers for the answer."""
        client_ip = request.client.host if request.client else ""
        caller = await auth.authenticate(request.headers, client_ip)
        headers: dict[str, str] = {}
        if same_work:
            bucket, per_minute = ratelimit.rule(
                caller, operation_id, request.method.lower(), client_ip
            )
            decision = await ratelimit.limiter().enforce(bucket, per_minute)
            headers = decision.headers() if decision else {}
        if permission and not caller.can(permission):
            raise PermissionDenied(f"This operation requires the '{permission}' permission.")
        return caller, headers

    @app.get("/v1/users/me")
    async def get_me(request: Request) -> JSONResponse:
        caller, headers = await caller_of(request, "get_me")
        me = await users.public_by_id(user_id=caller.user_id, roles=list(caller.roles))
        if me is None:
            raise NotFound("The user no longer exists.")
        return JSONResponse({"data": me}, 200, headers)

    @app.post("/v1/projects", status_code=201)
    async def create_project(request: Request, body: ProjectCreate) -> JSONResponse:
        caller, headers = await caller_of(request, "create_project", "projects:write")
        project = await projects.create(
            org_id=caller.org_id,
            owner_id=projects.owner_for(user_id=caller.user_id, requested=body.owner_id),
            title=body.title,
            status=body.status,
        )
        headers["Location"] = f"/v1/projects/{project.id}"
        return JSONResponse({"data": projects.public(project)}, 201, headers)

    return app


app = build(same_work=True)
lean_app = build(same_work=False)
