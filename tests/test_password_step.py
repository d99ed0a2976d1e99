"""The one password step of every sign-in (`models.signin.password_step`), called directly: what
first-party login and the OAuth authorization page share."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from models.signin import password_step
from tessera.core import db, passwords
from tessera.core.errors import AccountLocked, AuthenticationFailed
from tests.support.factories import PASSWORD, signed_in, unique_email

WRONG = "Wrong-Password-1!"


async def _throttles(email: str) -> int:
    async with db.transaction() as session:
        query = text("SELECT count(*) FROM login_throttles WHERE email = :e")
        return (await session.execute(query, {"e": email})).scalar_one()


@pytest.mark.parametrize("email", ["", "ghost\x00@example.com"])
async def test_an_empty_email_or_one_with_a_nul_is_refused_before_any_lookup(email, monkeypatch):
    async def no_lookup(**_):
        raise AssertionError("looked up")

    monkeypatch.setattr(password_step, "_attempt", no_lookup)
    with pytest.raises(AuthenticationFailed) as refused:
        await password_step.check(email=email, password=WRONG, ip="10.1.0.1")
    assert refused.value.message == "Invalid email or password."


async def test_a_wrong_password_counts_toward_the_lockout_and_names_its_channel(client):
    account = await signed_in(client)
    with pytest.raises(AuthenticationFailed):
        await password_step.check(
            email=account.email.upper(), password=WRONG, ip="10.1.0.2", via="oauth"
        )
    assert await _throttles(account.email) == 1
    async with db.transaction() as session:
        meta = (
            await session.execute(
                text(
                    "SELECT meta FROM audit_log WHERE action = 'auth.login_failed'"
                    " AND resource_id = :u ORDER BY seq DESC LIMIT 1"
                ),
                {"u": account.user["id"]},
            )
        ).scalar_one()
    assert "oauth" in str(meta)

    passed = await password_step.check(email=account.email, password=PASSWORD, ip="10.1.0.2")
    assert passed.account.id == account.user["id"]
    assert passed.throttled is True and passed.enrolled is False
    elsewhere = await password_step.check(email=account.email, password=PASSWORD, ip="10.1.0.3")
    assert elsewhere.throttled is False


async def test_unknown_accounts_lock_like_known_ones():
    email = unique_email("ghost")
    for _ in range(4):
        with pytest.raises(AuthenticationFailed):
            await password_step.check(email=email, password=WRONG, ip="10.1.0.4")
    with pytest.raises(AccountLocked) as locked:
        await password_step.check(email=email, password=WRONG, ip="10.1.0.4")
    assert locked.value.message == "Too many failed sign-in attempts; try again later."
    assert int(locked.value.headers["Retry-After"]) > 0


async def test_matches_does_the_same_work_without_a_live_account(monkeypatch):
    calls = []

    async def dummy(password: str) -> None:
        calls.append(password)

    monkeypatch.setattr(passwords, "verify_dummy", dummy)
    deleted = password_step.Account("usr_x", "x@example.com", None, "deleted", True, "hash")
    unset = password_step.Account("usr_y", "y@example.com", None, "active", True, None)
    for account in (None, deleted, unset):
        assert await password_step.matches(account, PASSWORD) is False
    assert calls == [PASSWORD] * 3
