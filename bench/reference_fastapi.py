"""The FastAPI reference for `make bench`: the same work as Tessera for two operations.

GET /v1/users/me and POST /v1/projects authenticate with the same code (tessera.auth: ES256
verification, the session check and its cache), then call the same service functions in the
same kind of unit of work as Tessera's handlers (handlers/users.get_me: an autocommit read;
handlers/projects.create_project: one transaction writing the project, its audit entry and its
event), and answer the same JSON with the same status and `Location`. Only the framework around
them differs: FastAPI + Pydantic instead of Connexion driven by the OpenAPI document.

What Tessera does on top, and the reference does not, so any ratio is in the reference's favour:
the rate limit (one Redis round trip), the request id, the access log, metrics, security
headers, the request size limits, the idempotency check, and the outbox relay that publishes
each project's event.
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from models import projects, users
from tessera import auth, db
from tessera.errors import ApiError, NotFound, PermissionDenied, envelope

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.exception_handler(ApiError)
async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(envelope(exc.code, exc.message, exc.details), exc.status, exc.headers)


async def _caller(request: Request, permission: str | None = None) -> auth.Principal:
    """The caller and, like Tessera's `x-permission`, the permission the operation needs."""
    client_ip = request.client.host if request.client else ""
    caller = await auth.authenticate(request.headers, client_ip)
    if permission and not caller.can(permission):
        raise PermissionDenied(f"This operation requires the '{permission}' permission.")
    return caller


@app.get("/v1/users/me")
async def get_me(request: Request) -> dict:
    caller = await _caller(request)
    async with db.reader() as session:
        user = await users.get(session=session, user_id=caller.user_id)
    if user is None:
        raise NotFound("The user no longer exists.")
    return {"data": users.public(user, list(caller.roles))}


# The contract's ProjectTitle: not blank, no control characters.
_TITLE = r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$"


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200, pattern=_TITLE)
    status: Literal["active", "archived"] = "active"
    owner_id: str | None = Field(default=None, pattern=r"^usr_[0-9A-Z]{26}$")


@app.post("/v1/projects", status_code=201)
async def create_project(request: Request, body: ProjectCreate) -> JSONResponse:
    caller = await _caller(request, "projects:write")
    async with db.transaction() as session:
        project = await projects.create(
            session=session,
            org_id=caller.org_id,
            owner_id=projects.owner_for(user_id=caller.user_id, requested=body.owner_id),
            title=body.title,
            status=body.status,
        )
    headers = {"Location": f"/v1/projects/{project.id}"}
    return JSONResponse({"data": projects.public(project)}, 201, headers)
