"""The OAuth endpoints' HTTP surface that the contract does not describe.

* GET and POST /oauth/authorize: the authorization endpoint (RFC 6749 §4.1.1), a minimal
  server-rendered sign-in and consent page (text/html, no script) served as non-spec routes.
  An unknown client or an unregistered redirect URI is shown on an error page, never redirected
  (§4.1.2.1); every other error goes back to the client as `error=…&state=…`. Forms are
  protected against cross-site submission by a double submit: a random value in a
  SameSite=Strict, HttpOnly cookie and, in a hidden field, an HMAC (server secret) over that
  value and every authorization parameter, so a forged or altered form fails. The consent step
  carries a short-lived signed ticket naming the user who signed in.
* RFC 6749 §5.2 error bodies (`{"error", "error_description"}`) for
  `models.oauth.grants.OAuthError`, and for form bodies under /oauth/ that do not match the
  contract (`FormValidator`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time
import typing as t
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import ProblemException
from connexion.lifecycle import ConnexionRequest, ConnexionResponse
from connexion.validators import FormDataValidator
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.types import Receive, Scope

from models.identity.roles import PERMISSIONS
from models.identity.users import User
from models.oauth import grants as oauth
from tessera.core import db, tokens
from tessera.core.settings import get_settings
from tessera.web.error_handlers import OAUTH_JSON
from tessera.web.ratelimit import limiter
from tessera.web.validation import compiled

COOKIE = "tessera_oauth_csrf"
AUTHORIZE_PATH = "/oauth/authorize"
TICKET_TTL_S = 600
AUTHORIZATION_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)

_STYLE = (
    "body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#1d2230;margin:0}"
    "main{max-width:26rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;"
    "box-shadow:0 1px 4px #0002}h1{font-size:1.25rem}label{display:block;margin:1rem 0 .25rem}"
    "input{width:100%;box-sizing:border-box;padding:.5rem;font-size:1rem}"
    "button{margin:1.25rem .5rem 0 0;padding:.5rem 1rem;font-size:1rem}"
    ".error{color:#a4000f}code{background:#eef0f4;padding:0 .25rem}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()


# --- errors in the OAuth shape ---------------------------------------------------------------


def oauth_error_response(error: oauth.OAuthError) -> ConnexionResponse:
    return ConnexionResponse(
        status_code=error.status,
        content_type=OAUTH_JSON,
        body=orjson.dumps(error.body()),
        headers={**error.headers, "Cache-Control": "no-store", "Pragma": "no-cache"},
    )


async def render_oauth_error(_request: ConnexionRequest, exc: oauth.OAuthError):
    return oauth_error_response(exc)


class FormValidator(FormDataValidator):
    """Form bodies under /oauth/ follow RFC 6749 §3.2 instead of Connexion's strict validation:
    a parameter without a value counts as omitted, unrecognized parameters are ignored, a
    recognized one may not repeat, and a body that breaks the schema is an `invalid_request`
    (`unsupported_grant_type` for an unknown grant type). Other form bodies are Connexion's."""

    _oauth = False

    async def wrap_receive(self, receive: Receive, *, scope: Scope) -> tuple[Receive, Scope]:
        self._oauth = scope["path"].startswith("/oauth/")
        if not self._oauth:
            return await super().wrap_receive(receive, scope=scope)
        try:
            return await super().wrap_receive(receive, scope=scope)
        except ProblemException as exc:  # for example a missing body
            raise oauth.invalid_request(str(exc.detail or exc.title)) from None

    async def _parse(self, stream: t.AsyncGenerator[bytes, None], scope: Scope) -> t.Any:
        if not self._oauth:
            return await super()._parse(stream, scope)
        raw = b"".join([chunk async for chunk in stream])
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise oauth.invalid_request("The body is not UTF-8.") from None
        known = self._schema.get("properties", {})
        form: dict[str, str] = {}
        for name, value in pairs:
            if name not in known or value == "":
                continue
            if name in form:
                raise oauth.invalid_request(f"'{name}' is included more than once.")
            form[name] = value
        return form

    def _validate(self, body: t.Any) -> None:
        if not self._oauth:
            super()._validate(body)
            return
        errors = sorted(compiled(self._schema).errors(body), key=lambda e: [str(p) for p in e.path])
        if not errors:
            return
        error = errors[0]
        name = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "required":
            missing = [n for n in error.validator_value if n not in body]
            name = missing[0] if missing else name
            raise oauth.invalid_request(f"{name} is required.")
        if name in ("client_id", "client_secret"):  # an unknown client, as far as RFC 6749 goes
            raise oauth.invalid_client("Unknown client or wrong credentials.")
        if name == "grant_type" and error.validator == "enum":
            raise oauth.OAuthError(
                "unsupported_grant_type", f"Unsupported grant_type {body[name][:100]!r}."
            )
        # Name the rule, not the value: it may be long, or a secret.
        raise oauth.invalid_request(
            f"{name} is malformed ({error.validator}: {error.validator_value!r})."
        )


def validator_map(base: dict) -> dict:
    """Tessera's validators with `FormValidator` for form bodies."""
    body = MediaTypeDict({**base["body"], "application/x-www-form-urlencoded": FormValidator})
    return {**base, "body": body}


# --- the authorization page ------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _mac(*parts: str) -> str:
    message = orjson.dumps(parts)
    return _b64(hmac.new(tokens.server_secret(), message, hashlib.sha256).digest())


def _csrf_token(nonce: str, request: oauth.AuthorizationRequest) -> str:
    return _mac("oauth-csrf", nonce, request.canonical())


def _ticket(user_id: str, nonce: str, request: oauth.AuthorizationRequest) -> str:
    expires = str(int(time.time()) + TICKET_TTL_S)
    return (
        f"{user_id}.{expires}.{_mac('oauth-consent', user_id, expires, nonce, request.canonical())}"
    )


def _ticket_user(ticket: str | None, nonce: str, request: oauth.AuthorizationRequest) -> str | None:
    user_id, _, rest = (ticket or "").partition(".")
    expires, _, mac = rest.partition(".")
    if not (user_id and expires.isdigit() and mac) or int(expires) < time.time():
        return None
    expected = _mac("oauth-consent", user_id, expires, nonce, request.canonical())
    return user_id if hmac.compare_digest(mac, expected) else None


def _collect(pairs: t.Iterable[tuple[str, str]]) -> tuple[dict[str, str], set[str]]:
    """Parameters by name (§3.1: an empty value counts as omitted) and the repeated ones."""
    params: dict[str, str] = {}
    repeated: set[str] = set()
    for name, value in pairs:
        if value == "":
            continue
        if name in params:
            repeated.add(name)
        params[name] = value
    return params, repeated


def _csp(redirect_to: str | None = None) -> str:
    # form-action also governs where a submitted form may redirect: the client's origin.
    origin = ""
    if redirect_to:
        parts = urlsplit(redirect_to)
        origin = f" {parts.scheme}://{parts.netloc}"
    return (
        f"default-src 'self'; style-src 'sha256-{_STYLE_HASH}'; form-action 'self'{origin}; "
        "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    )


def _page(title: str, body: str, *, status: int = 200, redirect_to: str | None = None) -> Response:
    document = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="referrer" content="no-referrer"><title>{html.escape(title)} · Tessera</title>'
        f"<style>{_STYLE}</style></head><body><main>{body}</main></body></html>"
    )
    return HTMLResponse(
        document,
        status_code=status,
        headers={
            "Content-Security-Policy": _csp(redirect_to),
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
        },
    )


def _error_page(message: str, status: int = 400) -> Response:
    body = f'<h1>This sign-in link cannot be used</h1><p class="error">{html.escape(message)}</p>'
    return _page("Authorization error", body, status=status)


def _hidden(request: oauth.AuthorizationRequest, csrf: str, **extra: str) -> str:
    values = {
        "response_type": "code",
        "client_id": request.client.id,
        "redirect_uri": request.redirect_uri,
        "scope": " ".join(request.scope),
        "state": request.state or "",
        "code_challenge": request.code_challenge or "",
        "code_challenge_method": request.code_challenge_method or "",
        "csrf_token": csrf,
        **extra,
    }
    return "".join(
        f'<input type="hidden" name="{name}" value="{html.escape(value)}">'
        for name, value in values.items()
        if value
    )


def _sign_in_page(
    request: oauth.AuthorizationRequest,
    csrf: str,
    *,
    error: str | None = None,
    email: str = "",
    ask_code: bool = False,
) -> Response:
    name = html.escape(request.client.name)
    alert = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    code_field = (
        '<label for="code">Authentication code (or a recovery code)</label>'
        '<input id="code" name="code" autocomplete="one-time-code" inputmode="numeric" required>'
        if ask_code
        else ""
    )
    body = (
        f"<h1>Sign in to continue to {name}</h1>{alert}"
        f'<form method="post" action="{AUTHORIZE_PATH}">{_hidden(request, csrf, step="sign_in")}'
        '<label for="email">Email</label>'
        f'<input id="email" name="email" type="email" autocomplete="username" required '
        f'value="{html.escape(email)}">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" '
        'autocomplete="current-password" required>'
        f"{code_field}"
        '<button type="submit" name="decision" value="sign_in">Sign in</button>'
        '<button type="submit" name="decision" value="deny" formnovalidate>Cancel</button>'
        "</form>"
    )
    return _page("Sign in", body, redirect_to=request.redirect_to)


def _consent_page(
    request: oauth.AuthorizationRequest, csrf: str, ticket: str, user: User, held: list[str]
) -> Response:
    name = html.escape(request.client.name)
    items = (
        "".join(
            f"<li><code>{html.escape(s)}</code> {html.escape(PERMISSIONS.get(s, ''))}</li>"
            for s in held
        )
        or "<li>No access to your organization's data.</li>"
    )
    missing = [s for s in request.scope if s not in held]
    note = (
        f"<p>Not granted, because you do not hold them: {html.escape(' '.join(missing))}.</p>"
        if missing
        else ""
    )
    body = (
        f"<h1>Allow {name} to access Tessera?</h1>"
        f"<p>Signed in as {html.escape(user.email)}. {name} will be able to:</p>"
        f"<ul>{items}</ul>{note}"
        f'<form method="post" action="{AUTHORIZE_PATH}">'
        f"{_hidden(request, csrf, step='consent', ticket=ticket)}"
        '<button type="submit" name="decision" value="approve">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button>'
        "</form>"
    )
    return _page("Authorize", body, redirect_to=request.redirect_to)


def _redirect(to: str, params: dict[str, str | None], status: int) -> Response:
    """Back to the client, keeping the registered URI's own query (§3.1.2)."""
    parts = urlsplit(to)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=status)


def _answer(request_to: str, state: str | None, status: int, **params: str) -> Response:
    issuer = get_settings().jwt_issuer.rstrip("/")  # RFC 9207: who answers
    return _redirect(request_to, {**params, "state": state, "iss": issuer}, status)


async def _begin(
    params: dict[str, str], repeated: set[str], status: int
) -> oauth.AuthorizationRequest | Response:
    """The validated request, or the page or redirect that answers it."""
    if repeated & {"client_id", "redirect_uri"}:
        return _error_page("client_id and redirect_uri must be sent once.")
    try:
        async with db.transaction() as session:
            client, redirect_to = await oauth.resolve_client(
                session=session,
                client_id=params.get("client_id"),
                redirect_uri=params.get("redirect_uri"),
            )
    except oauth.AuthorizePageError as exc:
        return _error_page(str(exc))
    try:
        if repeated & set(AUTHORIZATION_PARAMS):
            names = ", ".join(sorted(repeated & set(AUTHORIZATION_PARAMS)))
            raise oauth.invalid_request(f"Parameters sent more than once: {names}.")
        return oauth.check_authorization_request(client, redirect_to, params)
    except oauth.OAuthError as exc:
        state = params.get("state") if "state" not in repeated else None
        return _answer(redirect_to, state, status, **exc.body())


def _with_cookie(response: Response, nonce: str, request: Request) -> Response:
    response.set_cookie(
        COOKIE,
        nonce,
        path=AUTHORIZE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https" or get_settings().is_production,
    )
    return response


async def authorize(request: Request) -> Response:
    """GET: check the request, then show the sign-in form."""
    params, repeated = _collect(request.query_params.multi_items())
    outcome = await _begin(params, repeated, 302)
    if isinstance(outcome, Response):
        return outcome
    nonce = request.cookies.get(COOKIE) or secrets.token_urlsafe(32)
    page = _sign_in_page(outcome, _csrf_token(nonce, outcome))
    return _with_cookie(page, nonce, request)


async def authorize_submit(request: Request) -> Response:
    """POST: the sign-in form, then the consent form."""
    try:
        pairs = parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        return _error_page("The form is not UTF-8.")
    params, repeated = _collect(pairs)
    outcome = await _begin(params, repeated, 303)
    if isinstance(outcome, Response):
        return outcome
    authz = outcome
    nonce = request.cookies.get(COOKIE)
    csrf = _csrf_token(nonce, authz) if nonce else ""
    if not nonce or not hmac.compare_digest(params.get("csrf_token", ""), csrf):
        return _error_page(
            "The form expired or did not come from this page; go back to the application and "
            "start again.",
            status=403,
        )
    decision, step = params.get("decision"), params.get("step")
    if decision == "deny":
        return _answer(
            authz.redirect_to,
            authz.state,
            303,
            error="access_denied",
            error_description="The user denied the request.",
        )
    if step == "sign_in":
        return await _sign_in(request, authz, nonce, csrf, params)
    if step == "consent" and decision == "approve":
        return await _approve(authz, nonce, params)
    return _error_page("The form is incomplete; start again.")


async def _sign_in(
    request: Request,
    authz: oauth.AuthorizationRequest,
    nonce: str,
    csrf: str,
    params: dict[str, str],
) -> Response:
    email = params.get("email", "")[:320]
    ip = request.client.host if request.client else ""
    # The same per-address budget as POST /v1/auth/login: this form is another way to guess.
    decision = await limiter().hit(f"ip:{ip}:login", get_settings().rate_limit_login_per_ip)
    if decision is not None and not decision.allowed:
        error = f"Too many sign-in attempts; try again in {decision.retry_after} seconds."
        page = _sign_in_page(authz, csrf, error=error, email=email)
        page.status_code = 429
        page.headers.update(decision.headers())
        return page
    try:
        user = await oauth.sign_in(
            email=email,
            password=params.get("password", "")[:256],
            code=params.get("code", "")[:64] or None,
            ip=ip,
        )
    except oauth.SignInRefused as exc:
        return _sign_in_page(authz, csrf, error=exc.message, email=email, ask_code=exc.needs_code)
    async with db.transaction() as session:
        problem = await oauth.resource_owner_problem(
            session=session, user=user, client=authz.client
        )
        held = await _held_scopes(session, user, authz)
    if problem:
        return _sign_in_page(authz, csrf, error=problem, email=email)
    return _consent_page(authz, csrf, _ticket(user.id, nonce, authz), user, held)


async def _held_scopes(session, user: User, authz: oauth.AuthorizationRequest) -> list[str]:
    """What the token will carry, so the page promises no more: nothing while the organization
    requires MFA the user has not set up."""
    from models.signin import login as auth

    _roles, permissions = await auth.org_access(
        session=session, user=user, org_id=authz.client.org_id
    )
    return oauth.effective_scope(authz.scope, permissions)


async def _approve(
    authz: oauth.AuthorizationRequest, nonce: str, params: dict[str, str]
) -> Response:
    user_id = _ticket_user(params.get("ticket"), nonce, authz)
    if user_id is None:
        return _error_page("The sign-in expired; go back to the application and start again.", 403)
    async with db.transaction() as session:
        user = await session.get(User, user_id)
        problem = (
            "The account no longer exists."
            if user is None
            else await oauth.resource_owner_problem(session=session, user=user, client=authz.client)
        )
        if problem is None:
            code = await oauth.issue_code(session=session, request=authz, user_id=user_id)
    if problem is not None:
        return _error_page(problem, 403)
    return _answer(authz.redirect_to, authz.state, 303, code=code)


def register(app) -> None:
    """The pages as non-spec routes, and the OAuth error shape for `OAuthError`."""
    app.add_url_rule(AUTHORIZE_PATH, "oauth_authorize", authorize, methods=["GET"])
    app.add_url_rule(AUTHORIZE_PATH, "oauth_authorize_submit", authorize_submit, methods=["POST"])
    app.add_error_handler(oauth.OAuthError, render_oauth_error)
