"""The indexed router (tessera.routing) picks the route a full Starlette scan would pick."""

from __future__ import annotations

import re

from starlette.routing import Match, Route

from tessera.contract import get_contract
from tessera.routing import IndexedRouter


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
