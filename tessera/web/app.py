"""The application factory: the Connexion app built from the contract, wrapped in our middleware."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import AsyncIterator
from functools import partial

from connexion import AsyncApp
from connexion.middleware import request_validation as connexion_validation
from connexion.middleware.main import ConnexionMiddleware
from connexion.middleware.response_validation import ResponseValidationMiddleware
from connexion.middleware.routing import RoutingMiddleware
from connexion.middleware.security import SecurityMiddleware
from connexion.middleware.server_error import ServerErrorMiddleware
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from connexion.options import SwaggerUIOptions
from connexion.resolver import Resolution, Resolver
from starlette.requests import Request
from starlette.responses import Response

from tessera.core import db, logs, tracing
from tessera.core.settings import Settings, get_settings
from tessera.web import error_handlers, fast_path, oauth_pages, ratelimit, redoc
from tessera.web.authentication import Authenticate
from tessera.web.contract import get_contract
from tessera.web.deprecation import DeprecationHeaders
from tessera.web.idempotency import Idempotency
from tessera.web.middleware import (
    ConditionalGet,
    Cors,
    RequestContext,
    RequestLimits,
    security_headers,
)
from tessera.web.ratelimit import RateLimit
from tessera.web.routing import DocsOnlySwaggerUI, IndexedRoutingMiddleware
from tessera.web.validation import RequestValidationMiddleware, validator_map

log = logging.getLogger("tessera.app")

HEARTBEAT_INTERVAL_S = 30.0


class TagResolver(Resolver):
    """`operationId` names a function in the handler module of the operation's first tag:
    `get_health` tagged `system` is `handlers.system.get_health`."""

    def resolve(self, operation) -> Resolution:
        tag = operation._operation.get("tags", ["default"])[0]
        target = f"handlers.{tag}.{operation.operation_id}"
        return Resolution(self.resolve_function_from_operation_id(target), operation.operation_id)


async def _serve_json(_request: Request) -> Response:
    return Response(get_contract().json_bytes, media_type="application/json")


async def _serve_yaml(_request: Request) -> Response:
    return Response(get_contract().yaml_bytes, media_type="application/yaml")


async def _enqueue_heartbeats() -> None:
    from workers import heartbeat

    while True:
        try:
            heartbeat.heartbeat.send()
        except Exception:  # a broker outage must not kill the server; /status shows it
            log.warning("could not enqueue the worker heartbeat", exc_info=True)
        await asyncio.sleep(HEARTBEAT_INTERVAL_S)


@contextlib.asynccontextmanager
async def lifespan(_app) -> AsyncIterator[None]:
    import workers  # noqa: F401  (declares every actor)
    from workers import broker, outbox, runner

    in_process = None
    if broker.backend() == "in-process":
        in_process = runner.start(threads=4)
    background = [
        asyncio.create_task(_enqueue_heartbeats()),
        asyncio.create_task(outbox.run_forever()),
    ]
    try:
        yield
    finally:
        for task in background:
            task.cancel()
        if in_process is not None:
            in_process.stop()
        await db.dispose()


def _connexion_middlewares(settings: Settings) -> list:
    """Connexion's stack with ours in place of its security middleware (who is calling, how
    often they may, and whether this POST was already answered), and leaner replacements for
    some of its layers."""
    stack: list = []
    for middleware in ConnexionMiddleware.default_middlewares:
        if middleware is SecurityMiddleware:
            stack += [partial(Authenticate, on_refused=ratelimit.refused), RateLimit, Idempotency]
        elif middleware is RoutingMiddleware:
            stack.append(IndexedRoutingMiddleware)  # same routing, without the linear scan
        elif middleware is SwaggerUIMiddleware:
            stack.append(DocsOnlySwaggerUI)  # its own router only for the docs paths
        elif middleware is connexion_validation.RequestValidationMiddleware:
            stack.append(RequestValidationMiddleware)  # per-operation parsers built once
        elif middleware is ServerErrorMiddleware:
            # Reached only when an error handler fails; RequestContext answers that with the
            # envelope (Connexion's answer was problem+json), without a layer on every request.
            continue
        elif middleware is ResponseValidationMiddleware and not settings.response_validation:
            continue  # it would only pass every request on
        else:
            stack.append(middleware)
    return stack


def _streamed_bodies() -> frozenset[tuple[str, str]]:
    """(method, path) of the operations whose handlers read their bodies as streams."""
    return frozenset(
        (op.method.upper(), op.path)
        for op in get_contract().operations.values()
        if op.spec.get("x-streamed-body") and "{" not in op.path
    )


def create_app(settings: Settings | None = None):
    settings = settings or get_settings()
    logs.configure(settings)
    app = AsyncApp(
        __name__,
        middlewares=_connexion_middlewares(settings),
        lifespan=lifespan,
        strict_validation=True,
        validate_responses=settings.response_validation,
        pythonic_params=True,
        resolver=TagResolver(),
        validator_map=oauth_pages.validator_map(validator_map()),
        jsonifier=fast_path.OrjsonJsonifier(),
        swagger_ui_options=SwaggerUIOptions(
            serve_spec=False, swagger_ui_path="/docs", spec_path="/openapi.json"
        ),
    )
    fast_path.install(app)
    # The contract already parsed (Connexion would parse the file again with the slow loader);
    # a copy, since Connexion resolves references in place.
    app.add_api(copy.deepcopy(get_contract().document))
    app.add_url_rule("/openapi.json", "openapi_json", _serve_json, methods=["GET"])
    app.add_url_rule("/openapi.yaml", "openapi_yaml", _serve_yaml, methods=["GET"])
    oauth_pages.register(app)  # GET/POST /oauth/authorize (HTML), RFC 6749 error bodies
    app.add_url_rule("/redoc", "redoc", redoc.page, methods=["GET"])
    app.add_url_rule(redoc.SCRIPT_PATH, "redoc_script", redoc.script, methods=["GET"])
    error_handlers.register(app)

    asgi = RequestLimits(ConditionalGet(app), settings, streamed=_streamed_bodies())
    if settings.cors_origins:
        asgi = Cors(
            asgi,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "X-API-Key",
                "X-Request-Id",
                "Idempotency-Key",
                "X-Idempotency-Key",
                "If-Match",
                "If-None-Match",
                "Range",
                "If-Range",
            ],
            expose_headers=[
                "X-Request-Id",
                "ETag",
                "Location",
                "Retry-After",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "Deprecation",
                "Sunset",
                "Link",
                "Content-Disposition",
                "Content-Range",
                "Accept-Ranges",
            ],
            max_age=600,
        )
    hooks = (DeprecationHeaders(), security_headers, ratelimit.rate_limit_headers)
    return RequestContext(tracing.instrument(asgi, settings), header_hooks=hooks)
