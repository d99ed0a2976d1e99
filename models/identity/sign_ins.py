"""What identity needs of `models.signin`, in one place: ending sign-ins, forgetting failed
sign-in attempts, and whether a user has set up MFA.

`models.signin` is the domain above this one (it imports `models.identity` at module level), so
these four functions are the only places identity reaches it, each importing it where it is
used. They are the boundary to move: once signin offers them (or the orchestration that calls
them moves above identity), identity imports nothing of signin.
"""

from __future__ import annotations

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession


async def end_sign_ins(
    *, session: AsyncSession, user_id: str, reason: str, org_id: str | None = None
) -> None:
    """Revoke the user's sign-ins that are not revoked yet (only those to `org_id` when given),
    in the caller's transaction and in the revocation cache."""
    from models.signin import login

    if org_id is None:
        await login.revoke_user_sessions(session=session, user_id=user_id, reason=reason)
        return
    open_in_org = select(login.Session.id).where(
        login.Session.user_id == user_id,
        login.Session.org_id == org_id,
        login.Session.revoked_at.is_(None),
    )
    for sign_in_id in (await session.exec(open_in_org)).all():
        await login.revoke_session(session=session, session_id=sign_in_id, reason=reason)


async def end_organization_sign_ins(*, session: AsyncSession, org_id: str, reason: str) -> None:
    """Revoke every sign-in to the organization, whoever holds it."""
    from models.signin import login

    in_org = select(login.Session.id).where(login.Session.org_id == org_id)
    for sign_in_id in (await session.exec(in_org)).all():
        await login.revoke_session(session=session, session_id=sign_in_id, reason=reason)


async def forget_failed_sign_ins(*, session: AsyncSession, email: str) -> int:
    """Drop the failed sign-in attempts counted against `email` from every address; returns how
    many addresses were cleared."""
    from models.signin import login

    return await login.clear_failures(session=session, email=email)


async def has_second_factor(*, session: AsyncSession, user_id: str) -> bool:
    from models.signin import mfa

    return await mfa.get_factor(session=session, user_id=user_id) is not None
