"""Registration, sign-in, refresh, sign-out, password policy and signing keys."""

from __future__ import annotations

from models.identity import sign_ins, users
from models.signin import mfa, registration, token_pairs
from models.signin.login import login_and_commit
from tessera.core import db, passwords, tokens
from tessera.core.caller import require_user
from tessera.core.errors import AuthenticationFailed
from tessera.core.request_context import client_ip, user_agent
from tessera.web.http import created


async def register(body: dict):
    passwords.enforce_policy(body["password"], email=body["email"])
    password_hash = await passwords.hash_password(body["password"])
    async with db.transaction() as session:
        result = await registration.register(
            session=session,
            email=body["email"],
            display_name=body["display_name"],
            password_hash=password_hash,
            organization_name=body.get("organization_name"),
        )
    return created(result, f"/v1/users/{result['user']['id']}")


def _signed_in(pair: token_pairs.TokenPair, user):
    data = {**pair.as_dict(), "user": users.public(user, pair.roles)}
    return {"data": {**data, "mfa_enrollment_required": pair.mfa_enrollment_required}}, 200


async def login(body: dict):
    pair, user = await login_and_commit(
        email=body["email"],
        password=body["password"],
        mfa_code=body.get("mfa_code"),
        recovery_code=body.get("recovery_code"),
        ip=client_ip(),
        user_agent=user_agent(),
    )
    return _signed_in(pair, user)


async def verify_mfa_challenge(body: dict):
    pair, user = await mfa.sign_in_with_challenge_and_commit(
        mfa_token=body["mfa_token"],
        code=body.get("code"),
        recovery_code=body.get("recovery_code"),
        ip=client_ip(),
        user_agent=user_agent(),
    )
    return _signed_in(pair, user)


async def refresh_tokens(body: dict):
    pair = await token_pairs.rotate_and_commit(
        refresh_token=body["refresh_token"], ip=client_ip(), user_agent=user_agent()
    )
    if pair is None:
        raise AuthenticationFailed("The refresh token is invalid, expired or already used.")
    return {"data": pair.as_dict()}, 200


async def logout():
    caller = require_user()
    async with db.transaction() as session:
        await sign_ins.sign_out(session=session, sign_in_id=caller.session_id, org_id=caller.org_id)
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
