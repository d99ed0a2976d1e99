"""The FastAPI reference for `make bench`: the same work as Tessera for two operations.

GET /v1/users/me and POST /v1/projects authenticate with the same code (tessera.auth: RS256
verification, the session check and its cache), read and write the same tables through the same
service functions, and answer the same JSON. Only the framework around them differs: FastAPI +
Pydantic instead of Connexion driven by the OpenAPI document.
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from models import projects, users
from tessera import activity, auth, db
from tessera.errors import ApiError, envelope

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.exception_handler(ApiError)
async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(envelope(exc.code, exc.message, exc.details), exc.status, exc.headers)


async def _caller(request: Request) -> auth.Principal:
    client_ip = request.client.host if request.client else ""
    return await auth.authenticate(request.headers, client_ip)


@app.get("/v1/users/me")
async def get_me(request: Request) -> dict:
    caller = await _caller(request)
    async with db.transaction() as session:
        user = await users.get(session=session, user_id=caller.user_id)
    return {"data": users.public(user, list(caller.roles))}


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str = Field(min_length=1, max_length=200)
    status: Literal["active", "archived"] = "active"


@app.post("/v1/projects", status_code=201)
async def create_project(request: Request, body: ProjectCreate) -> dict:
    caller = await _caller(request)
    async with db.transaction() as session:
        project = projects.Project(
            org_id=caller.org_id, owner_id=caller.user_id, title=body.title, status=body.status
        )
        session.add(project)
        await session.flush()
        data = projects.public(project)
        await activity.record(
            session=session,
            action="project.created",
            org_id=caller.org_id,
            resource_type="project",
            resource_id=project.id,
            data={"project": data},
        )
    return {"data": data}
