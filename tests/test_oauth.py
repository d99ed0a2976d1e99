"""The OAuth 2.0 authorization server through HTTP: client registration, the authorization page
(sign-in, consent, CSRF), the authorization-code grant with PKCE, refresh rotation, client
credentials, revocation, introspection, error shapes and metadata."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from models.oauth import grants as oauth
from tests.support.browser import Browser, requires_chromium
from tests.support.factories import PASSWORD, Account, new_member, signed_in

REDIRECT = "https://app.example.com/callback"
UNKNOWN = "cli_" + "0" * 26  # well-formed, never issued
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# --- helpers ---------------------------------------------------------------------------------


class _Forms(HTMLParser):
    """The inputs of the page's form: name -> value (hidden fields and their defaults)."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.buttons: dict[str, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")
        if tag == "button" and a.get("name"):
            self.buttons.setdefault(a["name"], []).append(a.get("value", ""))


def form_of(html: str) -> _Forms:
    parser = _Forms()
    parser.feed(html)
    return parser


def pkce(verifier: str | None = None) -> tuple[str, str]:
    verifier = verifier or secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    return verifier, challenge.decode()


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register_client(http, admin: Account, **overrides) -> dict:
    body = {
        "name": "Reporting dashboard",
        "client_type": "public",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["events:read", "audit:read"],
        **overrides,
    }
    response = await http.post("/v1/oauth/clients", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def token(http, form: dict, headers: dict | None = None):
    return await http.post(
        "/oauth/token", content=urlencode(form), headers={**FORM, **(headers or {})}
    )


def refresh_form(refresh_token: str, client_id: str, **extra: str) -> dict:
    """The refresh-token grant of a public client (it authenticates by its id alone)."""
    return {
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
        "client_id": client_id,
        **extra,
    }


async def consent_page(http, account: Account, params: dict):
    """GET the authorization page and sign in; returns the consent page response."""
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    fields = form_of(page.text).fields
    assert "csrf_token" in fields
    signed = await http.post(
        "/oauth/authorize",
        data={**fields, "email": account.email, "password": account.password},
    )
    assert signed.status_code == 200, signed.text
    return signed


async def authorize(http, account: Account, client: dict, *, scope="events:read", **extra) -> dict:
    """Drive the browser flow; returns the query of the redirect back to the client."""
    params = {
        "response_type": "code",
        "client_id": client["id"],
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": "st-123",
        **extra,
    }
    consent = await consent_page(http, account, params)
    approved = await http.post(
        "/oauth/authorize", data={**form_of(consent.text).fields, "decision": "approve"}
    )
    assert approved.status_code == 303, approved.text
    location = urlsplit(approved.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(location.query).items()}


async def code_grant(http, admin: Account, *, scope="events:read", **client_overrides):
    """A public client, an authorization with PKCE, and the token response."""
    client, form, _ = await code_grant_without_exchange(
        http, admin, scope=scope, **client_overrides
    )
    return client, form, await token(http, form)


async def code_grant_without_exchange(
    http,
    admin: Account,
    *,
    verifier: str | None = None,
    scope: str = "events:read",
    **client_overrides,
):
    """A public client, an authorization with PKCE, and the token request's form (not sent)."""
    client = await register_client(http, admin, **client_overrides)
    verifier, challenge = pkce(verifier)
    answer = await authorize(
        http, admin, client, scope=scope, code_challenge=challenge, code_challenge_method="S256"
    )
    form = {
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": client["id"],
    }
    return client, form, answer


async def sign_in_fields(http, account: Account, client: dict) -> dict[str, str]:
    """GET the authorization page of a confidential client (no PKCE) and fill in the sign-in
    form: the fields to POST."""
    params = {
        "response_type": "code",
        "client_id": client["id"],
        "redirect_uri": REDIRECT,
        "scope": "events:read",
        "state": "s",
    }
    page = await http.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    return {**form_of(page.text).fields, "email": account.email, "password": account.password}


async def approve_and_exchange(http, consent, client: dict, verifier: str):
    """Allow on the consent page, then exchange the code as the public client (PKCE)."""
    approved = await http.post(
        "/oauth/authorize", data={**form_of(consent.text).fields, "decision": "approve"}
    )
    code = parse_qs(urlsplit(approved.headers["location"]).query)["code"][0]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": client["id"],
    }
    return await token(http, form)


TOTP_NOW = 1_800_000_015.0  # the frozen TOTP clock of the MFA tests: 15 s into a step


async def turn_on_mfa(http, account: Account, monkeypatch) -> str:
    """MFA on for `account`, confirmed with the previous step's code; returns the secret."""
    import pyotp

    from models.signin import mfa

    monkeypatch.setattr(mfa, "clock", lambda: TOTP_NOW)
    enabled = await http.post("/v1/users/me/2fa/enable", headers=account.headers)
    secret = enabled.json()["data"]["secret"]
    confirmed = await http.post(
        "/v1/users/me/2fa/verify",
        headers=account.headers,
        json={"code": pyotp.TOTP(secret).at(TOTP_NOW - 30)},
    )
    assert confirmed.status_code == 200, confirmed.text
    return secret


def assert_oauth_error(response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error, body
    assert set(body) == {"error", "error_description"}


# --- client registration ---------------------------------------------------------------------


async def test_client_registration_shows_the_secret_once_and_isolates_tenants(client):
    admin = await signed_in(client)
    created = await register_client(
        client, admin, client_type="confidential", grant_types=["client_credentials"]
    )
    assert created["client_secret"].startswith("cs_")
    assert created["id"].startswith("cli_")
    got = await client.get(f"/v1/oauth/clients/{created['id']}", headers=admin.headers)
    assert got.status_code == 200
    assert "client_secret" not in got.json()["data"]
    listed = await client.get("/v1/oauth/clients", headers=admin.headers)
    assert [c["id"] for c in listed.json()["data"]] == [created["id"]]

    patched = await client.patch(
        f"/v1/oauth/clients/{created['id']}",
        json={"scopes": ["events:read"]},
        headers={**admin.headers, "If-Match": got.headers["etag"]},
    )
    assert patched.status_code == 200 and patched.json()["data"]["scopes"] == ["events:read"]

    stranger = await signed_in(client)
    for method in ("GET", "PATCH", "DELETE"):
        other = await client.request(
            method,
            f"/v1/oauth/clients/{created['id']}",
            headers=stranger.headers,
            json={"name": "mine"} if method == "PATCH" else None,
        )
        assert other.status_code == 404, (method, other.text)
    assert (await client.get("/v1/oauth/clients", headers=stranger.headers)).json()["total"] == 0

    # Admin-only: a member without `admin` can neither list nor register clients.
    from tests.support.factories import login

    email = await new_member(client, admin, role="editor")
    editor = bearer((await login(client, email))["access_token"])
    listed_by_editor = await client.get("/v1/oauth/clients", headers=editor)
    assert listed_by_editor.status_code == 403
    body = {"name": "Mine", "grant_types": ["client_credentials"], "scopes": ["events:read"]}
    registered_by_editor = await client.post("/v1/oauth/clients", json=body, headers=editor)
    assert registered_by_editor.status_code == 403, registered_by_editor.text

    deleted = await client.delete(f"/v1/oauth/clients/{created['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/v1/oauth/clients/{created['id']}", headers=admin.headers)
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"redirect_uris": ["http://app.example.com/cb"]}, "redirect_uris.0"),
        ({"redirect_uris": ["https://app.example.com/cb#frag"]}, "redirect_uris.0"),
        ({"grant_types": ["client_credentials"]}, "grant_types"),  # public client
        ({"redirect_uris": []}, "redirect_uris"),
        ({"grant_types": ["refresh_token"]}, "grant_types"),
    ],
)
async def test_invalid_registrations_are_422(client, overrides, field):
    admin = await signed_in(client)
    body = {
        "name": "Bad",
        "client_type": "public",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code"],
        "scopes": ["events:read"],
        **overrides,
    }
    response = await client.post("/v1/oauth/clients", json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert field in {d["field"] for d in response.json()["error"]["details"]}


async def test_loopback_redirects_are_allowed_for_development(client):
    admin = await signed_in(client)
    created = await register_client(
        client, admin, redirect_uris=["http://127.0.0.1:8765/cb", "http://localhost/cb"]
    )
    assert created["client_secret"] is None  # public


# --- authorization code + PKCE ---------------------------------------------------------------


async def test_authorization_code_flow_with_pkce(client):
    admin = await signed_in(client)
    registered = await register_client(client, admin)
    verifier, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": registered["id"],
        "redirect_uri": REDIRECT,
        "scope": "events:read",
        "state": "st-123",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "prompt": "consent",  # unrecognized parameters are ignored (RFC 6749 §3.1)
    }
    page = await client.get("/oauth/authorize", params=params)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "form-action 'self' https://app.example.com" in csp
    assert "unsafe-inline" not in csp and "<script" not in page.text
    cookie = page.headers["set-cookie"].lower()
    assert (
        "httponly" in cookie and "samesite=strict" in cookie and "path=/oauth/authorize" in cookie
    )
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"

    login_form = form_of(page.text)
    assert {"email", "password", "csrf_token", "code_challenge"} <= set(login_form.fields)
    consent = await client.post(
        "/oauth/authorize",
        data={**login_form.fields, "email": admin.email, "password": PASSWORD},
    )
    assert consent.status_code == 200
    assert "Reporting dashboard" in consent.text and "events:read" in consent.text
    consent_form = form_of(consent.text)
    assert consent_form.buttons["decision"] == ["approve", "deny"]
    assert "password" not in consent_form.fields  # the password is not carried along

    approved = await client.post(
        "/oauth/authorize", data={**consent_form.fields, "decision": "approve"}
    )
    assert approved.status_code == 303
    location = urlsplit(approved.headers["location"])
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    assert query["state"] == "st-123" and query["iss"] == "http://127.0.0.1:8080"
    assert query["code"].startswith("ac_")

    exchanged = await token(
        client,
        {
            "grant_type": "authorization_code",
            "code": query["code"],
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
            "client_id": registered["id"],
        },
    )
    assert exchanged.status_code == 200, exchanged.text
    assert exchanged.headers["cache-control"] == "no-store"
    assert exchanged.headers["pragma"] == "no-cache"
    tokens = exchanged.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 900
    assert tokens["scope"] == "events:read"
    assert tokens["refresh_token"].startswith("rt_")

    # Exactly the granted scope on /v1: events:read yes, audit:read (registered, not granted) no.
    assert (
        await client.get("/v1/events", headers=bearer(tokens["access_token"]))
    ).status_code == 200
    outside = await client.get("/v1/audit", headers=bearer(tokens["access_token"]))
    assert outside.status_code == 403
    assert outside.json()["error"]["code"] == "PERMISSION_DENIED"
    # The owner's own first-party token can do both.
    assert (await client.get("/v1/audit", headers=admin.headers)).status_code == 200


async def test_delegated_token_carries_only_scopes_the_user_holds(client):
    from models.identity import organizations, users
    from tessera.core import db

    admin = await signed_in(client)
    viewer = await signed_in(client, org=False)
    async with db.transaction() as session:
        await organizations.add_member(
            session=session,
            org_id=admin.organization["id"],
            user_id=viewer.user["id"],
            role="viewer",
        )
        (await users.get(session=session, user_id=viewer.user["id"])).org_id = admin.organization[
            "id"
        ]
    registered = await register_client(client, admin, scopes=["users:read", "events:read"])
    verifier, challenge = pkce()
    consent = await consent_page(
        client,
        viewer,
        {
            "response_type": "code",
            "client_id": registered["id"],
            "redirect_uri": REDIRECT,
            "scope": "users:read events:read",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert "Not granted" in consent.text and "events:read" in consent.text
    response = await approve_and_exchange(client, consent, registered, verifier)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "users:read"
    access = bearer(response.json()["access_token"])
    assert (await client.get("/v1/events", headers=access)).status_code == 403


async def test_wrong_verifier_is_invalid_grant_and_does_not_burn_the_code(client):
    admin = await signed_in(client)
    _registered, form, _ = await code_grant_without_exchange(client, admin)
    wrong = await token(client, {**form, "code_verifier": pkce()[0]})
    assert_oauth_error(wrong, 400, "invalid_grant")
    missing = await token(client, {k: v for k, v in form.items() if k != "code_verifier"})
    assert_oauth_error(missing, 400, "invalid_grant")
    assert (await token(client, form)).status_code == 200


async def test_reused_code_is_refused_and_revokes_the_tokens_issued_from_it(client):
    admin = await signed_in(client)
    _registered, form, first = await code_grant(client, admin)
    assert first.status_code == 200
    issued = first.json()
    assert (
        await client.get("/v1/events", headers=bearer(issued["access_token"]))
    ).status_code == 200
    again = await token(client, form)
    assert_oauth_error(again, 400, "invalid_grant")
    assert "already used" in again.json()["error_description"]
    revoked = await client.get("/v1/events", headers=bearer(issued["access_token"]))
    assert revoked.status_code == 401
    refreshed = await token(client, refresh_form(issued["refresh_token"], form["client_id"]))
    assert_oauth_error(refreshed, 400, "invalid_grant")


async def test_redirect_uri_must_match(client):
    admin = await signed_in(client)
    registered, form, _ = await code_grant_without_exchange(client, admin)
    other = await token(client, {**form, "redirect_uri": REDIRECT + "/other"})
    assert_oauth_error(other, 400, "invalid_grant")
    omitted = await token(client, {k: v for k, v in form.items() if k != "redirect_uri"})
    assert_oauth_error(omitted, 400, "invalid_grant")

    # At the authorization endpoint an unregistered URI is an error page, never a redirect.
    page = await client.get(
        "/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": registered["id"],
            "redirect_uri": "https://evil.example.com/callback",
            "state": "x",
        },
    )
    assert page.status_code == 400 and "location" not in page.headers
    assert "not registered" in page.text
    unknown = await client.get(
        "/oauth/authorize",
        params={"response_type": "code", "client_id": "cli_nope", "redirect_uri": REDIRECT},
    )
    assert unknown.status_code == 400 and "location" not in unknown.headers


async def test_codes_live_sixty_seconds_and_are_stored_hashed(client):
    from sqlalchemy import text

    from tessera.core import db, tokens

    admin = await signed_in(client)
    _registered, form, _ = await code_grant_without_exchange(client, admin)
    async with db.transaction() as session:
        lifetime, stored = (
            await session.execute(
                text(
                    "SELECT extract(epoch FROM expires_at - created_at), code_hash "
                    "FROM oauth_codes WHERE code_hash = :h"
                ),
                {"h": tokens.digest(form["code"])},
            )
        ).one()
    assert 59 <= float(lifetime) <= 61 and form["code"] not in stored


async def test_expired_code_is_invalid_grant(client, monkeypatch):
    admin = await signed_in(client)
    monkeypatch.setattr(oauth, "CODE_TTL", timedelta(seconds=-1))
    _registered, form, _ = await code_grant_without_exchange(client, admin)
    expired = await token(client, form)
    assert_oauth_error(expired, 400, "invalid_grant")
    assert "expired" in expired.json()["error_description"]


@pytest.mark.parametrize("verifier", ["a" * 43, "Az09-._~" * 16], ids=["43", "128"])
async def test_verifier_length_and_alphabet_follow_rfc_7636(client, verifier):
    """§4.1: 43 to 128 characters of [A-Z a-z 0-9 - . _ ~]; both bounds work end to end."""
    admin = await signed_in(client)
    _registered, form, _ = await code_grant_without_exchange(client, admin, verifier=verifier)
    for malformed in ("a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + "/"):
        refused = await token(client, {**form, "code_verifier": malformed})
        assert_oauth_error(refused, 400, "invalid_request")
    ok = await token(client, form)
    assert ok.status_code == 200, ok.text


async def test_code_is_bound_to_its_client(client):
    admin = await signed_in(client)
    _registered, form, _ = await code_grant_without_exchange(client, admin)
    thief = await register_client(client, admin)
    stolen = await token(client, {**form, "client_id": thief["id"]})
    assert_oauth_error(stolen, 400, "invalid_grant")


async def test_public_client_must_use_pkce(client):
    admin = await signed_in(client)
    registered = await register_client(client, admin)
    base = {
        "response_type": "code",
        "client_id": registered["id"],
        "redirect_uri": REDIRECT,
        "scope": "events:read",
        "state": "keep-me",
    }
    missing = await client.get("/oauth/authorize", params=base)
    assert missing.status_code == 302
    query = parse_qs(urlsplit(missing.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and query["state"] == ["keep-me"]
    assert "PKCE" in query["error_description"][0]
    plain = await client.get(
        "/oauth/authorize",
        params={**base, "code_challenge": pkce()[1], "code_challenge_method": "plain"},
    )
    assert parse_qs(urlsplit(plain.headers["location"]).query)["error"] == ["invalid_request"]
    bad_scope = await client.get(
        "/oauth/authorize",
        params={
            **base,
            "scope": "admin",
            "code_challenge": pkce()[1],
            "code_challenge_method": "S256",
        },
    )
    assert parse_qs(urlsplit(bad_scope.headers["location"]).query)["error"] == ["invalid_scope"]
    token_type = await client.get("/oauth/authorize", params={**base, "response_type": "token"})
    assert parse_qs(urlsplit(token_type.headers["location"]).query)["error"] == [
        "unsupported_response_type"
    ]


async def test_confidential_client_may_skip_pkce_but_authenticates(client):
    admin = await signed_in(client)
    registered = await register_client(client, admin, client_type="confidential")
    answer = await authorize(client, admin, registered)
    form = {"grant_type": "authorization_code", "code": answer["code"], "redirect_uri": REDIRECT}
    anonymous = await token(client, {**form, "client_id": registered["id"]})
    assert_oauth_error(anonymous, 401, "invalid_client")
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    ok = await token(client, form, basic(registered["id"], registered["client_secret"]))
    assert ok.status_code == 200, ok.text
    downgrade = await token(
        client,
        {**form, "code_verifier": pkce()[0]},
        basic(registered["id"], registered["client_secret"]),
    )
    assert_oauth_error(downgrade, 400, "invalid_grant")


async def test_redirect_uri_may_be_omitted_only_when_one_is_registered(client):
    """§3.1.2.3: with several registered URIs the request must name one; without a trusted
    URI the error is shown, never redirected (§4.1.2.1)."""
    admin = await signed_in(client)
    several = await register_client(
        client, admin, redirect_uris=[REDIRECT, "https://app.example.com/other"]
    )
    page = await client.get(
        "/oauth/authorize",
        params={"response_type": "code", "client_id": several["id"], "state": "s"},
    )
    assert page.status_code == 400 and "location" not in page.headers

    single = await register_client(client, admin, client_type="confidential")
    answer = await client.get(
        "/oauth/authorize",
        params={"response_type": "token", "client_id": single["id"], "state": "s"},
    )
    assert answer.status_code == 302  # the one registered URI is trusted: errors go there
    assert answer.headers["location"].startswith(REDIRECT + "?")


async def test_a_user_with_mfa_authorizes_with_a_code(client, monkeypatch):
    """The sign-in page asks for the second factor; a code works once (no replay)."""
    import pyotp

    admin = await signed_in(client)
    secret = await turn_on_mfa(client, admin, monkeypatch)
    registered = await register_client(client, admin, client_type="confidential")
    fields = await sign_in_fields(client, admin, registered)
    asked = await client.post("/oauth/authorize", data=fields)
    assert asked.status_code == 200 and "location" not in asked.headers
    assert "code" in form_of(asked.text).fields  # the page now has the code field

    code = pyotp.TOTP(secret).at(TOTP_NOW)
    consent = await client.post("/oauth/authorize", data={**fields, "code": code})
    assert consent.status_code == 200
    assert form_of(consent.text).buttons["decision"] == ["approve", "deny"]
    replayed = await client.post("/oauth/authorize", data={**fields, "code": code})
    assert form_of(replayed.text).buttons["decision"] == ["sign_in", "deny"]  # asked again
    assert "already used" in replayed.text


async def test_a_member_who_owes_the_org_mfa_authorizes_nothing(client, monkeypatch):
    """Where the organization requires MFA, a member without it is promised no scope on the
    consent page and gets a token carrying none, as at first-party sign-in."""

    admin = await signed_in(client)
    await turn_on_mfa(client, admin, monkeypatch)
    org_url = f"/v1/organizations/{admin.organization['id']}"
    required = await client.patch(org_url, json={"require_mfa": True}, headers=admin.headers)
    assert required.status_code == 200, required.text
    registered = await register_client(client, admin)
    email = await new_member(client, admin, role="admin")

    verifier, challenge = pkce()
    params = {
        "response_type": "code",
        "client_id": registered["id"],
        "redirect_uri": REDIRECT,
        "scope": "events:read",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    consent = await consent_page(client, Account({}, {}, email, PASSWORD, "", ""), params)
    assert "No access to your organization" in consent.text
    issued = await approve_and_exchange(client, consent, registered, verifier)
    assert issued.status_code == 200 and issued.json()["scope"] == ""
    denied = await client.get("/v1/events", headers=bearer(issued.json()["access_token"]))
    assert denied.status_code == 403


async def test_csrf_and_tampering_are_refused(client):
    admin = await signed_in(client)
    registered = await register_client(client, admin, client_type="confidential")
    fields = await sign_in_fields(client, admin, registered)

    forged = await client.post("/oauth/authorize", data={**fields, "csrf_token": "forged"})
    assert forged.status_code == 403 and "location" not in forged.headers

    widened = await client.post(
        "/oauth/authorize", data={**fields, "scope": "events:read audit:read"}
    )
    assert widened.status_code == 403  # the signed parameters changed

    client.cookies.clear()
    cross_site = await client.post("/oauth/authorize", data=fields)  # no SameSite cookie
    assert cross_site.status_code == 403 and "location" not in cross_site.headers

    # A consent form needs the ticket of a sign-in in this browser.
    fields = await sign_in_fields(client, admin, registered)
    skipped = await client.post(
        "/oauth/authorize", data={**fields, "step": "consent", "decision": "approve"}
    )
    assert skipped.status_code == 403 and "location" not in skipped.headers


async def test_wrong_password_and_deny(client):
    admin = await signed_in(client)
    registered = await register_client(client, admin, client_type="confidential")
    params = {
        "response_type": "code",
        "client_id": registered["id"],
        "redirect_uri": REDIRECT,
        "state": "s",
    }
    page = await client.get("/oauth/authorize", params=params)
    fields = form_of(page.text).fields
    wrong = await client.post(
        "/oauth/authorize", data={**fields, "email": admin.email, "password": "Wrong-Pass-123!"}
    )
    assert wrong.status_code == 200 and "Invalid email or password" in wrong.text
    assert "location" not in wrong.headers
    denied = await client.post("/oauth/authorize", data={**fields, "decision": "deny"})
    assert denied.status_code == 303
    query = parse_qs(urlsplit(denied.headers["location"]).query)
    assert query["error"] == ["access_denied"] and query["state"] == ["s"]


async def test_sign_in_page_shares_the_login_rate_limit(app, client, monkeypatch):
    import httpx

    from tessera.core.settings import get_settings

    admin = await signed_in(client)
    registered = await register_client(client, admin, client_type="confidential")
    monkeypatch.setattr(get_settings(), "rate_limit_login_per_ip", 1)
    transport = httpx.ASGITransport(app=app, client=("192.0.2.77", 50000))  # its own bucket
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as browser:
        page = await browser.get(
            "/oauth/authorize",
            params={
                "response_type": "code",
                "client_id": registered["id"],
                "redirect_uri": REDIRECT,
            },
        )
        fields = {**form_of(page.text).fields, "email": admin.email, "password": "Wrong-Pass-1!"}
        first = await browser.post("/oauth/authorize", data=fields)
        assert first.status_code == 200 and "Invalid email or password" in first.text
        second = await browser.post("/oauth/authorize", data={**fields, "password": PASSWORD})
        assert second.status_code == 429 and "Too many sign-in attempts" in second.text
        assert int(second.headers["retry-after"]) > 0


async def test_non_members_cannot_authorize_another_organizations_client(client):
    admin = await signed_in(client)
    outsider = await signed_in(client)
    registered = await register_client(client, admin, client_type="confidential")
    page = await client.get(
        "/oauth/authorize",
        params={"response_type": "code", "client_id": registered["id"], "redirect_uri": REDIRECT},
    )
    refused = await client.post(
        "/oauth/authorize",
        data={**form_of(page.text).fields, "email": outsider.email, "password": PASSWORD},
    )
    assert refused.status_code == 200 and "Only members" in refused.text
    assert "ticket" not in form_of(refused.text).fields


# --- refresh ---------------------------------------------------------------------------------


async def test_refresh_rotation_and_reuse_detection(client):
    admin = await signed_in(client)
    registered, _form, first = await code_grant(client, admin)
    original = first.json()["refresh_token"]

    one = await token(client, refresh_form(original, registered["id"]))
    assert one.status_code == 200, one.text
    assert one.json()["refresh_token"] != original and one.json()["scope"] == "events:read"
    two = await token(client, refresh_form(one.json()["refresh_token"], registered["id"]))
    assert two.status_code == 200
    # Narrowing is allowed for the new access token; widening is not.
    latest = two.json()["refresh_token"]
    wider = await token(client, refresh_form(latest, registered["id"], scope="admin"))
    assert_oauth_error(wider, 400, "invalid_scope")

    reused = await token(client, refresh_form(original, registered["id"]))  # two generations old
    assert_oauth_error(reused, 400, "invalid_grant")
    newest = await token(client, refresh_form(latest, registered["id"]))
    assert_oauth_error(newest, 400, "invalid_grant")
    ended = await client.get("/v1/events", headers=bearer(two.json()["access_token"]))
    assert ended.status_code == 401


async def test_refresh_tokens_stay_with_their_client(client):
    admin = await signed_in(client)
    registered, _form, first = await code_grant(client, admin)
    issued = first.json()
    other = await register_client(client, admin)
    elsewhere = await token(client, refresh_form(issued["refresh_token"], other["id"]))
    assert_oauth_error(elsewhere, 400, "invalid_grant")
    # Not a first-party refresh token either: no way around the client's scopes.
    first_party = await client.post(
        "/v1/auth/refresh", json={"refresh_token": issued["refresh_token"]}
    )
    assert first_party.status_code == 401
    # And a first-party refresh token is not an OAuth one.
    mine = await token(client, refresh_form(admin.refresh_token, registered["id"]))
    assert_oauth_error(mine, 400, "invalid_grant")
    still = await token(client, refresh_form(issued["refresh_token"], registered["id"]))
    assert still.status_code == 200


async def test_narrowed_refresh(client):
    admin = await signed_in(client)
    registered, _form, first = await code_grant(client, admin, scope="events:read audit:read")
    assert first.json()["scope"] == "audit:read events:read"
    narrowed = await token(
        client, refresh_form(first.json()["refresh_token"], registered["id"], scope="events:read")
    )
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "events:read"
    access = bearer(narrowed.json()["access_token"])
    assert (await client.get("/v1/audit", headers=access)).status_code == 403
    assert (await client.get("/v1/events", headers=access)).status_code == 200


# --- client credentials ----------------------------------------------------------------------


async def machine_client(http, admin: Account, scopes=("events:read",)) -> dict:
    return await register_client(
        http,
        admin,
        client_type="confidential",
        redirect_uris=[],
        grant_types=["client_credentials"],
        scopes=list(scopes),
    )


async def test_client_credentials_act_as_the_organization_with_the_granted_scopes(client):
    admin = await signed_in(client)
    stranger = await signed_in(client)
    machine = await machine_client(client, admin)
    issued = await token(
        client, {"grant_type": "client_credentials"}, basic(machine["id"], machine["client_secret"])
    )
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["scope"] == "events:read" and "refresh_token" not in body
    assert issued.headers["cache-control"] == "no-store"
    import jwt

    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["sub"] == machine["id"] == claims["client_id"]
    assert claims["org"] == admin.organization["id"] and "sid" not in claims

    access = bearer(body["access_token"])
    own = await client.get("/v1/events", headers=access)
    assert own.status_code == 200 and own.json()["total"] >= 1
    theirs = (await client.get("/v1/events", headers=stranger.headers)).json()["data"][0]["id"]
    assert (await client.get(f"/v1/events/{theirs}", headers=access)).status_code == 404
    assert (await client.get("/v1/audit", headers=access)).status_code == 403
    assert (await client.get("/v1/oauth/clients", headers=access)).status_code == 403
    me = await client.get("/v1/users/me", headers=access)
    assert me.status_code in (403, 404)  # not a user

    # client_secret_post works too; both methods at once do not.
    posted = await token(
        client,
        {
            "grant_type": "client_credentials",
            "client_id": machine["id"],
            "client_secret": machine["client_secret"],
        },
    )
    assert posted.status_code == 200
    both = await token(
        client,
        {"grant_type": "client_credentials", "client_secret": machine["client_secret"]},
        basic(machine["id"], machine["client_secret"]),
    )
    assert_oauth_error(both, 400, "invalid_request")


async def test_client_credentials_errors(client):
    admin = await signed_in(client)
    machine = await machine_client(client, admin)
    auth = basic(machine["id"], machine["client_secret"])
    wider = await token(client, {"grant_type": "client_credentials", "scope": "audit:read"}, auth)
    assert_oauth_error(wider, 400, "invalid_scope")
    wrong = await token(client, {"grant_type": "client_credentials"}, basic(machine["id"], "cs_x"))
    assert_oauth_error(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic realm=")
    unknown = await token(client, {"grant_type": "client_credentials"}, basic("cli_nope", "x"))
    assert_oauth_error(unknown, 401, "invalid_client")
    not_allowed = await token(client, {"grant_type": "authorization_code", "code": "ac_x"}, auth)
    assert_oauth_error(not_allowed, 400, "unauthorized_client")
    public = await register_client(client, admin)
    refused = await token(client, {"grant_type": "client_credentials", "client_id": public["id"]})
    assert_oauth_error(refused, 400, "unauthorized_client")


async def test_deleting_a_client_ends_its_tokens(client):
    admin = await signed_in(client)
    machine = await machine_client(client, admin)
    issued = await token(
        client, {"grant_type": "client_credentials"}, basic(machine["id"], machine["client_secret"])
    )
    deleted = await client.delete(f"/v1/oauth/clients/{machine['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    after = await client.get("/v1/events", headers=bearer(issued.json()["access_token"]))
    assert after.status_code == 401


# --- revocation and introspection ------------------------------------------------------------


async def test_revoke_then_introspect(client):
    admin = await signed_in(client)
    stranger = await signed_in(client)
    machine = await machine_client(client, admin)
    auth = basic(machine["id"], machine["client_secret"])
    access_token = (await token(client, {"grant_type": "client_credentials"}, auth)).json()[
        "access_token"
    ]

    def post(path: str, form: dict, headers: dict | None = None):
        return client.post(
            path,
            content=urlencode(form),
            headers={**FORM, **(auth if headers is None else headers)},
        )

    active = await post("/oauth/introspect", {"token": access_token})
    assert active.status_code == 200, active.text
    described = active.json()
    assert described["active"] is True and described["scope"] == "events:read"
    assert described["client_id"] == described["sub"] == machine["id"]
    assert described["token_type"] == "Bearer" and described["aud"] == "tessera-api"
    assert {"exp", "iat", "iss"} <= set(described)
    assert active.headers["cache-control"] == "no-store"

    # Another organization's resource server learns nothing.
    foreign = await machine_client(client, stranger)
    blind = await post(
        "/oauth/introspect", {"token": access_token}, basic(foreign["id"], foreign["client_secret"])
    )
    assert blind.json() == {"active": False}

    revoked = await post(
        "/oauth/revoke", {"token": access_token, "token_type_hint": "access_token"}
    )
    assert revoked.status_code == 200
    assert (await post("/oauth/introspect", {"token": access_token})).json() == {"active": False}
    rejected = await client.get("/v1/events", headers=bearer(access_token))
    assert rejected.status_code == 401

    # Unknown or garbage tokens: 200 to revoke, inactive to introspect.
    assert (await post("/oauth/revoke", {"token": "nonsense"})).status_code == 200
    assert (await post("/oauth/introspect", {"token": "nonsense"})).json() == {"active": False}
    assert_oauth_error(await post("/oauth/revoke", {"token": "x"}, {}), 401, "invalid_client")


async def test_revoking_a_refresh_token_ends_the_grant(client):
    admin = await signed_in(client)
    registered, _form, first = await code_grant(client, admin)
    issued = first.json()
    public_auth = {"client_id": registered["id"]}

    resource_server = await machine_client(client, admin)
    rs_auth = basic(resource_server["id"], resource_server["client_secret"])
    introspected = await client.post(
        "/oauth/introspect",
        content=urlencode({"token": issued["refresh_token"]}),
        headers={**FORM, **rs_auth},
    )
    assert introspected.json()["active"] is True
    assert introspected.json()["token_type"] == "refresh_token"
    assert introspected.json()["client_id"] == registered["id"]
    delegated = await client.post(
        "/oauth/introspect",
        content=urlencode({"token": issued["access_token"]}),
        headers={**FORM, **rs_auth},
    )
    assert delegated.json()["sub"] == admin.user["id"]
    assert delegated.json()["scope"] == "events:read"

    public_introspection = await client.post(
        "/oauth/introspect",
        content=urlencode({"token": issued["access_token"], **public_auth}),
        headers=FORM,
    )
    assert_oauth_error(public_introspection, 401, "invalid_client")

    revoked = await client.post(
        "/oauth/revoke",
        content=urlencode({"token": issued["refresh_token"], **public_auth}),
        headers=FORM,
    )
    assert revoked.status_code == 200
    assert (
        await client.get("/v1/events", headers=bearer(issued["access_token"]))
    ).status_code == 401
    refreshed = await token(
        client,
        {"grant_type": "refresh_token", "refresh_token": issued["refresh_token"], **public_auth},
    )
    assert_oauth_error(refreshed, 400, "invalid_grant")


async def test_a_client_cannot_revoke_another_clients_token(client):
    admin = await signed_in(client)
    machine = await machine_client(client, admin)
    other = await machine_client(client, admin)
    access_token = (
        await token(
            client,
            {"grant_type": "client_credentials"},
            basic(machine["id"], machine["client_secret"]),
        )
    ).json()["access_token"]
    ignored = await client.post(
        "/oauth/revoke",
        content=urlencode({"token": access_token}),
        headers={**FORM, **basic(other["id"], other["client_secret"])},
    )
    assert ignored.status_code == 200
    assert (await client.get("/v1/events", headers=bearer(access_token))).status_code == 200


async def test_tokens_verify_with_the_published_jwks(client):
    """Resource servers can check both kinds of token offline: the algorithm of the key named by
    `kid` (ES256 for the suite's generated key), iss and aud."""
    import jwt

    admin = await signed_in(client)
    _registered, _form, delegated = await code_grant(client, admin)
    machine = await machine_client(client, admin)
    issued = await token(
        client, {"grant_type": "client_credentials"}, basic(machine["id"], machine["client_secret"])
    )
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    jwks_path = urlsplit(metadata["jwks_uri"]).path
    keys = jwt.PyJWKSet.from_dict((await client.get(jwks_path)).json())
    for access_token in (delegated.json()["access_token"], issued.json()["access_token"]):
        header = jwt.get_unverified_header(access_token)
        key = keys[header["kid"]]
        assert header["alg"] == key.algorithm_name == "ES256"
        claims = jwt.decode(access_token, key, audience="tessera-api", issuer=metadata["issuer"])
        assert claims["scope"] == "events:read" and claims["client_id"]
        tampered = access_token[:-4] + ("AAAA" if not access_token.endswith("AAAA") else "BBBB")
        with pytest.raises(jwt.InvalidSignatureError):
            jwt.decode(tampered, key, audience="tessera-api")


# --- error shapes and metadata ---------------------------------------------------------------


async def test_token_endpoint_errors_have_the_rfc_6749_shape(client):
    missing = await token(client, {"client_id": UNKNOWN})
    assert_oauth_error(missing, 400, "invalid_request")
    assert missing.headers["content-type"] == "application/json;charset=UTF-8"
    assert "request_id" not in missing.text  # not the Tessera envelope
    unsupported = await token(client, {"grant_type": "password"})
    assert_oauth_error(unsupported, 400, "unsupported_grant_type")
    repeated = await client.post(
        "/oauth/token",
        content="grant_type=client_credentials&grant_type=client_credentials",
        headers=FORM,
    )
    assert_oauth_error(repeated, 400, "invalid_request")
    empty_body = await client.post("/oauth/token", headers=FORM)
    assert_oauth_error(empty_body, 400, "invalid_request")
    malformed = await token(client, {"grant_type": "authorization_code", "code_verifier": "short"})
    assert_oauth_error(malformed, 400, "invalid_request")
    # Unknown parameters are ignored and empty ones count as omitted (§3.2): here the client
    # authentication fails, not the request.
    ignored = await token(
        client,
        {"grant_type": "client_credentials", "audience": "x", "scope": "", "client_id": UNKNOWN},
    )
    assert_oauth_error(ignored, 401, "invalid_client")
    malformed_id = await token(client, {"grant_type": "client_credentials", "client_id": "cli_x"})
    assert_oauth_error(malformed_id, 401, "invalid_client")
    json_body = await client.post("/oauth/token", json={"grant_type": "client_credentials"})
    assert_oauth_error(json_body, 415, "invalid_request")
    assert "application/x-www-form-urlencoded" in json_body.json()["error_description"]


async def test_metadata_document(client):
    response = await client.get("/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    meta = response.json()
    issuer = meta["issuer"]
    assert issuer == "http://127.0.0.1:8080"
    assert meta["authorization_endpoint"] == f"{issuer}/oauth/authorize"
    assert meta["token_endpoint"] == f"{issuer}/oauth/token"
    assert meta["revocation_endpoint"] == f"{issuer}/oauth/revoke"
    assert meta["introspection_endpoint"] == f"{issuer}/oauth/introspect"
    assert meta["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert meta["response_types_supported"] == ["code"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert "events:read" in meta["scopes_supported"] and "admin" in meta["scopes_supported"]
    # Every endpoint it names is served.
    for path in ("/.well-known/jwks.json",):
        assert (await client.get(path)).status_code == 200


# --- a real browser (optional) ---------------------------------------------------------------


class _Callback:
    """The client's redirect URI on 127.0.0.1: records the query it is sent."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received: list[dict[str, str]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.path == "/cb":  # not the browser's own /favicon.ico request
                    received.append({k: v[0] for k, v in parse_qs(url.query).items()})
                body = b"<!doctype html><title>done</title>done"
                self.send_response(200)
                self.send_header("content-type", "text/html")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/cb"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@requires_chromium
async def test_flow_in_headless_chromium(test_env, tmp_path):
    """The sign-in and consent pages work in a real browser: no script of their own, the CSP
    (form-action includes the client's origin, so the redirect after the form is allowed), the
    SameSite=Strict CSRF cookie, and the redirect back with code and state."""
    import asyncio
    import json

    import httpx

    from tests.support.factories import unique_email
    from tests.support.services import ServerProcess

    server = ServerProcess(test_env, tmp_path / "server.log").start()
    callback = _Callback()
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            email = unique_email("browser")
            created = await http.post(
                "/v1/auth/register",
                json={
                    "email": email,
                    "password": PASSWORD,
                    "display_name": "Browser",
                    "organization_name": "Browser Org",
                },
            )
            assert created.status_code == 201, created.text
            signed = (
                await http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            ).json()["data"]
            registered = await http.post(
                "/v1/oauth/clients",
                headers=bearer(signed["access_token"]),
                json={
                    "name": "Browser test app",
                    "client_type": "public",
                    "redirect_uris": [callback.url],
                    "grant_types": ["authorization_code"],
                    "scopes": ["events:read"],
                },
            )
            assert registered.status_code == 201, registered.text
            client_id = registered.json()["data"]["id"]
            verifier, challenge = pkce()
            authorize_url = f"{server.base_url}/oauth/authorize?" + urlencode(
                {
                    "response_type": "code",
                    "client_id": client_id,
                    "redirect_uri": callback.url,
                    "scope": "events:read",
                    "state": "browser-state",
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                }
            )

            async with Browser.launch(tmp_path / "chromium") as tools:
                await tools.call("Page.navigate", url=authorize_url)
                await asyncio.wait_for(tools.wait_for("Page.loadEventFired"), 30)
                fill = (
                    f"document.getElementById('email').value = {json.dumps(email)};"
                    f"document.getElementById('password').value = {json.dumps(PASSWORD)};"
                    "document.querySelector('button[value=sign_in]').click();"
                )
                await asyncio.wait_for(tools.submit(fill), 30)
                page = await tools.call(
                    "Runtime.evaluate", expression="document.body.innerText", returnByValue=True
                )
                assert "Allow Browser test app" in page["result"]["value"]
                approve = "document.querySelector('button[value=approve]').click();"
                await asyncio.wait_for(tools.submit(approve), 30)
                assert tools.csp_violations() == []

            assert len(callback.received) == 1, callback.received
            answer = callback.received[0]
            assert answer["state"] == "browser-state" and answer["code"].startswith("ac_")
            exchanged = await http.post(
                "/oauth/token",
                data={
                    "grant_type": "authorization_code",
                    "code": answer["code"],
                    "redirect_uri": callback.url,
                    "code_verifier": verifier,
                    "client_id": client_id,
                },
            )
            assert exchanged.status_code == 200, exchanged.text
            assert exchanged.json()["scope"] == "events:read"
    finally:
        callback.close()
        server.stop()
