"""The indexed router (tessera.web.routing) picks the route a full Starlette scan would pick, and
the routing middleware built on it routes as Connexion's."""

from __future__ import annotations

import copy
import re

import pytest
from connexion.middleware.routing import RoutingMiddleware
from connexion.spec import Specification
from starlette.exceptions import HTTPException
from starlette.routing import Match, Route

from tessera.web.app import TagResolver
from tessera.web.contract import get_contract
from tessera.web.routing import IndexedRouter, IndexedRoutingMiddleware


async def _endpoint(scope, receive, send) -> None:  # never called
    raise AssertionError


def _router() -> IndexedRouter:
    router = IndexedRouter()
    for op in get_contract().operations.values():
        router.routes.append(Route(op.path, _endpoint, methods=[op.method.upper()]))
    return router


def _first_match(routes, scope: dict):
    """What Starlette's router picks: the first full match, else the first partial one (405)."""
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return partial


def test_every_operation_and_method_routes_as_a_full_scan_would() -> None:
    router = _router()
    paths = {re.sub(r"\{[^}]+\}", "x_1", op.path) for op in get_contract().operations.values()}
    paths |= {"/v1/nothing", "/health/", "/", "/v1/users/me/extra"}
    for path in sorted(paths):
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            scope = {"type": "http", "method": method, "path": path, "root_path": ""}
            assert _first_match(router._candidates(scope["path"]), scope) is _first_match(
                router.routes, scope
            ), (method, path)
    # The index really narrows the scan: a user path is tried against a few routes, not all.
    assert len(router._candidates("/v1/users/me")) < len(router.routes) / 3


class _Capture:
    """The next app: records what routing told it."""

    def __init__(self) -> None:
        self.seen: list = []

    async def __call__(self, scope, receive, send) -> None:
        routing = scope["extensions"]["connexion_routing"]
        self.seen.append((dict(routing), scope.get("path_params", {})))


async def _outcome(middleware, capture: _Capture, method: str, path: str):
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "app": object(),  # Starlette raises for a 405 instead of answering
    }
    sent: list = []

    async def send(message) -> None:
        sent.append(message)

    try:
        await middleware(scope, _endpoint, send)
    except HTTPException as exc:
        return "raised", exc.status_code, exc.headers
    return "passed", capture.seen.pop() if capture.seen else None, sent


@pytest.mark.parametrize("base_path", [None, "/api"])
async def test_routing_middleware_routes_as_connexion_does(base_path) -> None:
    """Operation, path parameters, 405s, slash redirects and unknown paths: what the next
    middleware sees (or what is raised or sent) is what Connexion's middleware gives."""
    specification = Specification.load(copy.deepcopy(get_contract().document))
    middlewares = []
    for cls in (RoutingMiddleware, IndexedRoutingMiddleware):
        capture = _Capture()
        middleware = cls(capture)
        middleware.add_api(specification, base_path=base_path, resolver=TagResolver())
        middlewares.append((middleware, capture))
    operations = get_contract().operations.values()
    paths = {(base_path or "") + re.sub(r"\{[^}]+\}", "1", op.path) for op in operations}
    paths |= {path + "/" for path in paths}
    paths |= {"/v1/nothing", "/", "/v1", "/v1/", "/api", "/api/", "/v1/users/me/extra", "//"}
    for path in sorted(paths):
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
            connexion, indexed = [
                await _outcome(middleware, capture, method, path)
                for middleware, capture in middlewares
            ]
            assert indexed == connexion, (method, path)
