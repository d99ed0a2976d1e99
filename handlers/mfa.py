"""Two-step sign-in for the signed-in user: TOTP authenticator apps and recovery codes.

These operations declare no permission, so the reduced token of a member whose organization
requires MFA (and who has none yet) can still set it up.
"""

from __future__ import annotations

from models.signin import mfa_enrollment
from tessera.core import db
from tessera.core.caller import require_user
from tessera.core.request_context import client_ip
from tessera.web.http import one


async def get_mfa_status():
    caller = require_user()
    async with db.transaction() as session:
        state = await mfa_enrollment.status(session=session, user_id=caller.user_id)
    return one(state)


async def enable_mfa():
    caller = require_user()
    async with db.transaction() as session:
        enrollment = await mfa_enrollment.enroll(session=session, user_id=caller.user_id)
    return {"data": enrollment}, 200


async def confirm_mfa(body: dict):
    caller = require_user()
    async with db.transaction() as session:
        activation = await mfa_enrollment.confirm(
            session=session, user_id=caller.user_id, org_id=caller.org_id, code=body["code"]
        )
    return {"data": activation}, 200


async def disable_mfa(body: dict):
    caller = require_user()
    await mfa_enrollment.disable_and_commit(
        user_id=caller.user_id,
        org_id=caller.org_id,
        password=body["password"],
        code=body.get("code"),
        recovery_code=body.get("recovery_code"),
        ip=client_ip(),
    )
    return None, 204


async def regenerate_recovery_codes(body: dict):
    caller = require_user()
    codes = await mfa_enrollment.regenerate_recovery_codes_and_commit(
        user_id=caller.user_id, org_id=caller.org_id, code=body["code"], ip=client_ip()
    )
    return {"data": {"recovery_codes": codes}}, 200
