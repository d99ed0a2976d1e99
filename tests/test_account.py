"""Password reset, email verification and email change, end to end: the mail goes through a real
SMTP server (aiosmtpd on 127.0.0.1), and the token is read from the delivered message."""

from __future__ import annotations

import asyncio
import email
import re
from email import policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from sqlmodel import select

from models.common.base import utcnow
from models.identity.users import User
from models.records import outbox
from models.signin import account as verification
from models.signin.single_use_tokens import SingleUseToken
from tessera.core import db, tokens
from tests.support.factories import PASSWORD, register, signed_in, unique_email
from tests.support.services import free_port

NEW_PASSWORD = "Staple-Battery-7-Horse!"
TOKEN = re.compile(r"^((?:pwr|emv|emc)_[A-Za-z0-9_-]{20,})\r?$", re.MULTILINE)


class Inbox:
    """An SMTP server that accepts everything (after LOGIN) and keeps what it received."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        self.messages.append(([r.lower() for r in envelope.rcpt_tos], parsed))
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = auth_data.login == b"tessera" and auth_data.password == b"smtp-secret"
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    def to(self, address: str) -> list[EmailMessage]:
        return [m for rcpts, m in self.messages if address.lower() in rcpts]

    async def wait_for(self, address: str, count: int = 1, limit_s: float = 15.0):
        deadline = asyncio.get_running_loop().time() + limit_s
        while asyncio.get_running_loop().time() < deadline:
            found = self.to(address)
            if len(found) >= count:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"no mail for {address} within {limit_s}s")


@pytest.fixture
def smtp(monkeypatch):
    from tessera.core.settings import get_settings

    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=inbox.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    settings = get_settings()
    monkeypatch.setattr(settings, "smtp_host", "127.0.0.1")
    monkeypatch.setattr(settings, "smtp_port", port)
    monkeypatch.setattr(settings, "smtp_starttls", False)
    monkeypatch.setattr(settings, "smtp_username", "tessera")
    monkeypatch.setattr(settings, "smtp_password", "smtp-secret")
    monkeypatch.setattr(settings, "public_url", "https://app.example.com")
    yield inbox
    controller.stop()


async def settle() -> None:
    """Wait until the outbox relay has handed every queued job to the broker, then until the
    in-process worker has run every mail job."""
    from workers.broker import broker

    for _ in range(200):
        async with db.reader() as session:
            if (await session.exec(select(outbox.OutboxMessage.id).limit(1))).first() is None:
                break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the outbox relay did not drain within 10 s")
    await asyncio.to_thread(broker.join, "email", timeout=20_000)


def token_in(message: EmailMessage) -> str:
    found = TOKEN.findall(message.get_content())
    assert len(found) == 1, message.get_content()
    return found[0]


async def test_password_reset_end_to_end_through_smtp(client, smtp):
    account = await signed_in(client)
    other_session = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    forgot = await client.post("/v1/auth/password/forgot", json={"email": account.email.upper()})
    assert forgot.status_code == 202

    (message,) = await smtp.wait_for(account.email)
    assert smtp.logins == ["tessera"]
    assert message["Subject"] == "Reset your Tessera password"
    assert message.get_content_type() == "text/plain"
    token = token_in(message)
    assert f"https://app.example.com/reset-password?token={token}" in message.get_content()

    reset = await client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 204, reset.text

    # Every session of the account ended: access tokens and refresh tokens alike.
    assert (await client.get("/v1/users/me", headers=account.headers)).status_code == 401
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": other_session.json()["data"]["refresh_token"]}
    )
    assert refreshed.status_code == 401
    old = await client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert old.status_code == 401
    new = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": NEW_PASSWORD}
    )
    assert new.status_code == 200
    assert new.json()["data"]["user"]["email_verified"] is True  # the mail proved the address

    again = await client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": "Another-Horse-8-Staple!"}
    )
    assert again.status_code == 422
    assert again.json()["error"]["details"][0]["field"] == "token"

    audit = await client.get(
        "/v1/audit?action=user.password_changed",
        headers={"Authorization": f"Bearer {new.json()['data']['access_token']}"},
    )
    assert audit.json()["total"] == 1
    assert audit.json()["data"][0]["metadata"] == {"via": "password_reset"}


async def test_unknown_address_answers_the_same_and_sends_nothing(client, smtp):
    account = await signed_in(client)
    known = await client.post("/v1/auth/password/forgot", json={"email": account.email})
    stranger = unique_email("nobody")
    unknown = await client.post("/v1/auth/password/forgot", json={"email": stranger})
    assert (unknown.status_code, unknown.json()) == (known.status_code, known.json())
    assert known.status_code == 202
    await smtp.wait_for(account.email)
    await settle()
    assert smtp.to(stranger) == []


async def test_a_new_reset_link_replaces_the_previous_one(client, smtp):
    account = await signed_in(client)
    for count in (1, 2):
        await client.post("/v1/auth/password/forgot", json={"email": account.email})
        await smtp.wait_for(account.email, count=count)
    older, newer = (token_in(m) for m in smtp.to(account.email))
    body = {"new_password": NEW_PASSWORD}
    replaced = await client.post("/v1/auth/password/reset", json={"token": older, **body})
    assert replaced.status_code == 422
    used = await client.post("/v1/auth/password/reset", json={"token": newer, **body})
    assert used.status_code == 204


async def test_reset_requests_are_limited_per_address(client, monkeypatch):
    address = unique_email("limited")
    answers = [
        (await client.post("/v1/auth/password/forgot", json={"email": address})).status_code
        for _ in range(4)
    ]
    assert answers == [202, 202, 202, 429]
    limited = await client.post("/v1/auth/password/forgot", json={"email": address.upper()})
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(limited.headers["retry-after"]) > 0
    # Another address is not affected.
    other = await client.post("/v1/auth/password/forgot", json={"email": unique_email("free")})
    assert other.status_code == 202


async def test_invalid_expired_and_used_tokens_answer_alike(client):
    account = await signed_in(client)
    async with db.transaction() as session:
        user = await session.get(User, account.user["id"])
        expired = await verification.issue(
            session=session, user=user, purpose="password_reset", address=user.email
        )
        row = (
            await session.exec(select(SingleUseToken).where(SingleUseToken.user_id == user.id))
        ).one()
        row.expires_at = utcnow()
        wrong_purpose = await verification.issue(
            session=session, user=user, purpose="email_verify", address=user.email
        )
    answers = []
    for token in (expired, wrong_purpose, "pwr_not-a-real-token"):
        response = await client.post(
            "/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
        )
        assert response.status_code == 422
        answers.append(response.json()["error"]["details"])
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0]["field"] == "token" and answers[0][0]["code"] == "INVALID_TOKEN"


async def test_weak_new_password_is_refused_and_the_token_stays_usable(client, smtp):
    account = await signed_in(client)
    await client.post("/v1/auth/password/forgot", json={"email": account.email})
    token = token_in((await smtp.wait_for(account.email))[0])
    weak = await client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": "password123"}
    )
    assert weak.status_code == 422
    assert {d["field"] for d in weak.json()["error"]["details"]} == {"new_password"}
    ok = await client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert ok.status_code == 204


async def test_reset_clears_the_sign_in_lockout(client, smtp, monkeypatch):
    from tessera.core.settings import get_settings

    monkeypatch.setattr(get_settings(), "lockout_threshold", 2)
    account = await signed_in(client)
    for _ in range(2):
        await client.post("/v1/auth/login", json={"email": account.email, "password": "Wrong-1!"})
    locked = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": PASSWORD}
    )
    assert locked.status_code == 423
    await client.post("/v1/auth/password/forgot", json={"email": account.email})
    token = token_in((await smtp.wait_for(account.email))[0])
    await client.post(
        "/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    unlocked = await client.post(
        "/v1/auth/login", json={"email": account.email, "password": NEW_PASSWORD}
    )
    assert unlocked.status_code == 200


async def test_development_backend_writes_eml_files(client, tmp_path, monkeypatch):
    from tessera.core.settings import get_settings

    monkeypatch.setattr(get_settings(), "data_dir", tmp_path)
    monkeypatch.setattr(get_settings(), "smtp_host", None)
    account = await signed_in(client)
    response = await client.post("/v1/users/me/email/verify", headers=account.headers)
    assert response.status_code == 202
    await settle()
    messages = [
        email.message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in (tmp_path / "mail").glob("*.eml")
    ]
    (message,) = [m for m in messages if m["To"] == account.email]
    assert message["Subject"] == "Verify your email address"
    assert "/verify-email?token=emv_" in message.get_content()


async def test_email_verification(client, smtp):
    account, other = await signed_in(client), await signed_in(client)
    assert account.user["email_verified"] is False
    response = await client.post("/v1/users/me/email/verify", headers=account.headers)
    assert response.status_code == 202
    token = token_in((await smtp.wait_for(account.email))[0])
    async with db.transaction() as session:
        stored = (
            await session.exec(
                select(SingleUseToken).where(SingleUseToken.user_id == account.user["id"])
            )
        ).all()
    assert [row.token_hash for row in stored] == [tokens.digest(token)]  # never the secret

    # A token belongs to the account it was mailed for.
    stolen = await client.post(
        "/v1/users/me/email/confirm", headers=other.headers, json={"token": token}
    )
    assert stolen.status_code == 422
    confirmed = await client.post(
        "/v1/users/me/email/confirm", headers=account.headers, json={"token": token}
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["data"]["email_verified"] is True
    assert confirmed.json()["data"]["email"] == account.email

    again = await client.post("/v1/users/me/email/verify", headers=account.headers)
    assert again.status_code == 409
    reused = await client.post(
        "/v1/users/me/email/confirm", headers=account.headers, json={"token": token}
    )
    assert reused.status_code == 422


async def test_email_change(client, smtp):
    account = await signed_in(client)
    taken_by = await register(client, org=False)
    new_address = unique_email("moved")

    wrong = await client.put(
        "/v1/users/me/email",
        headers=account.headers,
        json={"new_email": new_address, "password": "Not-The-Password-1!"},
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"][0]["field"] == "password"
    taken = await client.put(
        "/v1/users/me/email",
        headers=account.headers,
        json={"new_email": taken_by["user"]["email"].upper(), "password": PASSWORD},
    )
    assert taken.status_code == 409

    response = await client.put(
        "/v1/users/me/email",
        headers=account.headers,
        json={"new_email": new_address, "password": PASSWORD},
    )
    assert response.status_code == 202
    (confirmation,) = await smtp.wait_for(new_address)
    (notice,) = await smtp.wait_for(account.email)
    assert new_address in notice.get_content()
    assert TOKEN.findall(notice.get_content()) == []  # the old address gets no usable link
    token = token_in(confirmation)

    # Nothing changed yet.
    me = await client.get("/v1/users/me", headers=account.headers)
    assert me.json()["data"]["email"] == account.email
    confirmed = await client.post(
        "/v1/users/me/email/confirm", headers=account.headers, json={"token": token}
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["data"]["email"] == new_address
    assert confirmed.json()["data"]["email_verified"] is True
    login = await client.post("/v1/auth/login", json={"email": new_address, "password": PASSWORD})
    assert login.status_code == 200
    old = await client.post("/v1/auth/login", json={"email": account.email, "password": PASSWORD})
    assert old.status_code == 401


async def test_email_change_conflicts_when_the_address_was_taken_meanwhile(client, smtp):
    account = await signed_in(client)
    new_address = unique_email("contested")
    response = await client.put(
        "/v1/users/me/email",
        headers=account.headers,
        json={"new_email": new_address, "password": PASSWORD},
    )
    assert response.status_code == 202
    token = token_in((await smtp.wait_for(new_address))[0])
    await register(client, org=False, email=new_address)
    conflict = await client.post(
        "/v1/users/me/email/confirm", headers=account.headers, json={"token": token}
    )
    assert conflict.status_code == 409
    me = await client.get("/v1/users/me", headers=account.headers)
    assert me.json()["data"]["email"] == account.email


async def test_links_mailed_to_the_old_address_stop_working_after_a_change(client, smtp):
    account = await signed_in(client)
    await client.post("/v1/auth/password/forgot", json={"email": account.email})
    reset_token = token_in((await smtp.wait_for(account.email))[0])
    new_address = unique_email("switched")
    await client.put(
        "/v1/users/me/email",
        headers=account.headers,
        json={"new_email": new_address, "password": PASSWORD},
    )
    change_token = token_in((await smtp.wait_for(new_address))[0])
    confirmed = await client.post(
        "/v1/users/me/email/confirm", headers=account.headers, json={"token": change_token}
    )
    assert confirmed.status_code == 200
    stale = await client.post(
        "/v1/auth/password/reset", json={"token": reset_token, "new_password": NEW_PASSWORD}
    )
    assert stale.status_code == 422


async def test_account_mail_is_limited_per_user(client, smtp, monkeypatch):
    from tessera.core.settings import get_settings

    monkeypatch.setattr(get_settings(), "rate_limit_account_mail_per_user", 2)
    account = await signed_in(client)
    answers = [
        (await client.post("/v1/users/me/email/verify", headers=account.headers)).status_code
        for _ in range(3)
    ]
    assert answers == [202, 202, 429]


async def test_concurrent_resets_with_one_token_succeed_once(client, smtp):
    account = await signed_in(client)
    await client.post("/v1/auth/password/forgot", json={"email": account.email})
    token = token_in((await smtp.wait_for(account.email))[0])
    passwords = (NEW_PASSWORD, "Another-Horse-8-Staple!")
    answers = await asyncio.gather(
        *(
            client.post("/v1/auth/password/reset", json={"token": token, "new_password": p})
            for p in passwords
        )
    )
    assert sorted(a.status_code for a in answers) == [204, 422]
    winner = passwords[[a.status_code for a in answers].index(204)]
    login = await client.post("/v1/auth/login", json={"email": account.email, "password": winner})
    assert login.status_code == 200
