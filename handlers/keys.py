"""API keys of the caller's organization: list, create (secret shown once), revoke, rotate."""

from __future__ import annotations

from models.platform import keys
from models.records import activity
from tessera.core import db
from tessera.core.caller import require_org
from tessera.web.http import check_if_match, created, listing, one, parse_datetime


async def list_keys(
    limit: int = 20, offset: int = 0, cursor: str | None = None, revoked: bool | None = None
):
    caller = require_org()
    async with db.transaction() as session:
        return await listing(
            session,
            keys.list_query(org_id=caller.org_id, revoked=revoked),
            model=keys.ApiKey,
            render=keys.public,
            limit=limit,
            offset=offset,
            cursor=cursor,
        )


async def create_key(body: dict):
    caller = require_org()
    async with db.transaction() as session:
        key, secret = await keys.create(
            session=session,
            org_id=caller.org_id,
            name=body["name"],
            scopes=body["scopes"],
            held=set(caller.permissions),
            environment=body.get("environment", "live"),
            allowed_ips=body.get("allowed_ips", []),
            expires_at=parse_datetime(body.get("expires_at"), "expires_at"),
            created_by=caller.user_id,
        )
        await _record(session, "key.created", key)
    return created({**keys.public(key), "secret": secret}, f"/v1/keys/{key.id}")


async def get_key(key_id: str):
    caller = require_org()
    async with db.transaction() as session:
        key = await keys.get(session=session, org_id=caller.org_id, key_id=key_id)
    return one(keys.public(key))


async def revoke_key(key_id: str):
    caller = require_org()
    async with db.transaction() as session:
        key = await keys.get(session=session, org_id=caller.org_id, key_id=key_id, for_update=True)
        check_if_match(keys.public(key))
        if keys.revoke(key):
            await _record(session, "key.revoked", key)
    keys.keys_cache.drop(key.key_hash)  # after commit, so no request re-caches the live row
    return None, 204


async def rotate_key(key_id: str):
    caller = require_org()
    async with db.transaction() as session:
        old = await keys.get(session=session, org_id=caller.org_id, key_id=key_id, for_update=True)
        check_if_match(keys.public(old))
        key, secret = await keys.rotate(
            session=session, key=old, held=set(caller.permissions), created_by=caller.user_id
        )
        await _record(session, "key.revoked", old, {"replaced_by": key.id})
        await _record(session, "key.created", key, {"rotated_from": old.id})
    keys.keys_cache.drop(old.key_hash)
    return created({**keys.public(key), "secret": secret}, f"/v1/keys/{key.id}")


async def _record(session, action: str, key: keys.ApiKey, extra: dict | None = None) -> None:
    await activity.record(
        session=session,
        action=action,
        org_id=key.org_id,
        resource_type="api_key",
        resource_id=key.id,
        data={"name": key.name, "prefix": key.prefix, "scopes": list(key.scopes), **(extra or {})},
    )
