"""OAuth 2.0: client registration (admin), and the authorization server's token, revocation,
introspection and metadata endpoints. The browser pages of the authorization endpoint
(GET/POST /oauth/authorize) are served outside the contract by tessera.web.oauth_pages.

The form-encoded endpoints answer errors in the RFC 6749 §5.2 shape
(`models.oauth.grants.OAuthError`, rendered by tessera.web.oauth_pages), not the Tessera envelope:
OAuth client libraries expect it.
"""

from __future__ import annotations

from connexion.context import request
from starlette.responses import Response

from models.oauth import grants as oauth
from models.records import activity
from tessera.core import db
from tessera.core.caller import require_org
from tessera.core.request_context import client_ip, user_agent
from tessera.web.http import check_if_match, created, listing, one

# RFC 6749 §5.1: token responses must not be cached.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache", "Content-Type": "application/json"}


# --- clients ---------------------------------------------------------------------------------


async def list_oauth_clients(limit: int = 20, offset: int = 0, cursor: str | None = None):
    caller = require_org()
    async with db.transaction() as session:
        return await listing(
            session,
            oauth.clients_query(org_id=caller.org_id),
            model=oauth.OAuthClient,
            render=oauth.public_client,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )


async def create_oauth_client(body: dict):
    caller = require_org()
    async with db.transaction() as session:
        client, secret = await oauth.create_client(
            session=session,
            org_id=caller.org_id,
            created_by=caller.user_id,
            name=body["name"],
            client_type=body.get("client_type", "confidential"),
            redirect_uris=body.get("redirect_uris", []),
            grant_types=body["grant_types"],
            scopes=body["scopes"],
        )
        await activity.record(
            session=session,
            action="oauth_client.created",
            org_id=caller.org_id,
            resource_type="oauth_client",
            resource_id=client.id,
            data={"name": client.name, "client_type": client.client_type},
        )
    resource = {**oauth.public_client(client), "client_secret": secret}
    return created(resource, f"/v1/oauth/clients/{client.id}")


async def get_oauth_client(client_id: str):
    caller = require_org()
    async with db.transaction() as session:
        client = await oauth.get_client(session=session, org_id=caller.org_id, client_id=client_id)
    return one(oauth.public_client(client))


async def update_oauth_client(client_id: str, body: dict):
    caller = require_org()
    async with db.transaction() as session:
        client = await oauth.get_client(session=session, org_id=caller.org_id, client_id=client_id)
        check_if_match(oauth.public_client(client))
        oauth.apply_client_changes(client, body)
        await activity.record(
            session=session,
            action="oauth_client.updated",
            org_id=caller.org_id,
            resource_type="oauth_client",
            resource_id=client.id,
            data={"changes": sorted(body)},
        )
    return one(oauth.public_client(client))


async def delete_oauth_client(client_id: str):
    """Its codes and the sessions it holds go with it (foreign keys cascade), so its delegated
    tokens stop working; its client-credentials tokens fail the client check in tessera.auth."""
    caller = require_org()
    async with db.transaction() as session:
        client = await oauth.get_client(session=session, org_id=caller.org_id, client_id=client_id)
        check_if_match(oauth.public_client(client))
        await session.delete(client)
        await activity.record(
            session=session,
            action="oauth_client.deleted",
            org_id=caller.org_id,
            resource_type="oauth_client",
            resource_id=client_id,
        )
    return None, 204


# --- authorization server --------------------------------------------------------------------


def _form(body: dict | None) -> dict[str, str]:
    """RFC 6749 §3.2: a parameter sent without a value counts as omitted."""
    return {k: v for k, v in (body or {}).items() if isinstance(v, str) and v != ""}


async def _client(form: dict[str, str]) -> oauth.OAuthClient:
    credentials = oauth.client_credentials(request.headers.get("authorization"), form)
    async with db.transaction() as session:
        return await oauth.authenticate_client(session=session, credentials=credentials)


async def issue_token(body: dict):
    form = _form(body)
    client = await _client(form)
    grant_type = form.get("grant_type", "")
    oauth.require_grant(client, grant_type)
    if grant_type == "authorization_code":
        if "code" not in form:
            raise oauth.invalid_request("code is required.")
        answer = await oauth.exchange_code(
            client=client,
            code=form["code"],
            redirect_uri=form.get("redirect_uri"),
            code_verifier=form.get("code_verifier"),
            ip=client_ip(),
            user_agent=user_agent(),
        )
    elif grant_type == "refresh_token":
        if "refresh_token" not in form:
            raise oauth.invalid_request("refresh_token is required.")
        answer = await oauth.refresh_grant(
            client=client,
            refresh_token=form["refresh_token"],
            scope=oauth.parse_scope(form.get("scope")),
            ip=client_ip(),
            user_agent=user_agent(),
        )
    else:  # client_credentials; the schema admits no other grant type
        answer = oauth.client_credentials_grant(
            client=client, scope=oauth.parse_scope(form.get("scope"))
        )
    return answer, 200, _NO_STORE


async def revoke_token(body: dict):
    form = _form(body)
    client = await _client(form)
    if "token" not in form:
        raise oauth.invalid_request("token is required.")
    async with db.transaction() as session:
        await oauth.revoke(session=session, client=client, token=form["token"])
    # No body (§2.2); a response object, as the operation also declares error media types.
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


async def introspect_token(body: dict):
    form = _form(body)
    client = await _client(form)
    if client.client_type != "confidential":
        raise oauth.invalid_client("Introspection needs a confidential client.")
    if "token" not in form:
        raise oauth.invalid_request("token is required.")
    async with db.transaction() as session:
        answer = await oauth.introspect(session=session, client=client, token=form["token"])
    return answer, 200, _NO_STORE


async def get_authorization_server_metadata():
    return oauth.server_metadata(), 200, {"Cache-Control": "public, max-age=300"}
