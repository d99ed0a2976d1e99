"""Registration, sign-in, refresh, sign-out, password policy and signing keys."""

from __future__ import annotations

from models.identity import organizations, users
from models.records import activity
from models.signin import login as auth
from models.signin import mfa
from tessera.core import db, passwords, tokens
from tessera.core.caller import require_user
from tessera.core.errors import AuthenticationFailed
from tessera.core.request_context import client_ip, user_agent
from tessera.web.http import created


async def register(body: dict):
    passwords.enforce_policy(body["password"], email=body["email"])
    password_hash = await passwords.hash_password(body["password"])
    async with db.transaction() as session:
        user = await users.create(
            session=session,
            email=body["email"],
            display_name=body["display_name"],
            password_hash=password_hash,
        )
        result: dict = {}
        roles: list[str] = []
        if body.get("organization_name"):
            org = await organizations.create(
                session=session, name=body["organization_name"], owner_id=user.id
            )
            user.org_id, roles = org.id, ["owner"]
            result["organization"] = organizations.public(org)
            await activity.record(
                session=session,
                action="organization.created",
                org_id=org.id,
                resource_type="organization",
                resource_id=org.id,
                data={"name": org.name},
                actor_user_id=user.id,
            )
        result = {"user": users.public(user, roles), **result}
        await activity.record(
            session=session,
            action="user.created",
            org_id=user.org_id,
            resource_type="user",
            resource_id=user.id,
            data={"user": result["user"]},
            actor_user_id=user.id,
        )
    return created(result, f"/v1/users/{user.id}")


def _signed_in(pair: auth.TokenPair, user: users.User):
    data = {**pair.as_dict(), "user": users.public(user, pair.roles)}
    return {"data": {**data, "mfa_enrollment_required": pair.mfa_enrollment_required}}, 200


async def login(body: dict):
    pair, user = await auth.login(
        email=body["email"],
        password=body["password"],
        mfa_code=body.get("mfa_code"),
        recovery_code=body.get("recovery_code"),
        ip=client_ip(),
        user_agent=user_agent(),
    )
    return _signed_in(pair, user)


async def verify_mfa_challenge(body: dict):
    pair, user = await mfa.sign_in_with_challenge(
        mfa_token=body["mfa_token"],
        code=body.get("code"),
        recovery_code=body.get("recovery_code"),
        ip=client_ip(),
        user_agent=user_agent(),
    )
    return _signed_in(pair, user)


async def refresh_tokens(body: dict):
    pair = await auth.refresh(
        refresh_token=body["refresh_token"], ip=client_ip(), user_agent=user_agent()
    )
    if pair is None:
        raise AuthenticationFailed("The refresh token is invalid, expired or already used.")
    return {"data": pair.as_dict()}, 200


async def logout():
    caller = require_user()
    async with db.transaction() as session:
        await auth.revoke_session(session=session, session_id=caller.session_id, reason="logout")
        await activity.record(
            session=session,
            action="user.logout",
            org_id=caller.org_id,
            resource_type="session",
            resource_id=caller.session_id,
        )
    return None, 204


async def validate_password(body: dict):
    assessment = passwords.assess(body["password"], email=body.get("email"))
    return {
        "data": {
            "valid": assessment.valid,
            "score": assessment.score,
            "problems": [{"code": c, "message": m} for c, m in assessment.problems],
            "suggestions": assessment.suggestions,
        }
    }, 200


async def get_jwks():
    return tokens.keyring().jwks, 200, {"Cache-Control": "public, max-age=300"}
