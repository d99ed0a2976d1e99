"""Connexion's routing middleware with an indexed router.

Connexion 3.3 routes through a Starlette `Router` holding one `Route` per path and method, and a
Starlette router tries its routes one by one (a regex match each) until one matches: with over a
hundred operations that scan was 8 % of the CPU of GET /v1/users/me under `make bench` (py-spy).
A route can only match a request whose first two path segments equal its own literal ones, so
`IndexedRouter` tries just those routes (plus the few that start with a parameter), in their
original order: the first full match, and the partial match that yields 405, are the ones the
full scan would find. Anything else (no match, redirects, non-HTTP) is Starlette's own code.

It plugs in where Connexion builds the router, by replacing `RoutingMiddleware` in the
`middlewares=` stack (tessera.app); `MiddlewarePosition.*_ROUTING` therefore names Connexion's
class, which is no longer in the stack.

Connexion's Swagger UI middleware also routes every request through a router of its own (a
mount, a copy of the scope, a scan of its routes) before passing it on: 3 % of the CPU of GET
/v1/users/me. `DocsOnlySwaggerUI` sends only the paths its routes can match (or redirect) there.
"""

from __future__ import annotations

from connexion.middleware.routing import RoutingAPI, RoutingMiddleware, RoutingOperation
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.routing import Match, Mount, Route, Router, get_route_path
from starlette.types import Receive, Scope, Send

_KEYS_MAX = 1024  # request prefixes remembered; more (a scan of random URLs) are not cached


def _key(path: str) -> tuple[str, ...]:
    return tuple(path.split("/", 3)[1:3])


class IndexedRouter(Router):
    def _candidates(self, path: str) -> list:
        key = _key(path)
        cached = self._index.get(key)
        if cached is None:
            cached = [
                route
                for route in self.routes
                if not isinstance(route, Route)
                or "{" in "".join(_key(route.path))
                or _key(route.path) == key
            ]
            if len(self._index) < _KEYS_MAX:
                self._index[key] = cached
        return cached

    @property
    def _index(self) -> dict:
        # Built lazily and dropped when routes are added (Connexion adds them after creation).
        if getattr(self, "_indexed_routes", None) != len(self.routes):
            self._indexed_routes, self._prefix_index = len(self.routes), {}
        return self._prefix_index

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().app(scope, receive, send)
            return
        partial = partial_scope = None
        for route in self._candidates(get_route_path(scope)):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope.setdefault("router", self)
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial, partial_scope = route, child_scope
        if partial is not None:
            scope.setdefault("router", self)
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return
        await super().app(scope, receive, send)  # no route: redirect or default, as Starlette


class IndexedRoutingAPI(RoutingAPI):
    def __init__(self, *args, next_app, **kwargs) -> None:
        super().__init__(*args, next_app=next_app, **kwargs)
        indexed = IndexedRouter(default=RoutingOperation(None, next_app))
        indexed.routes = self.router.routes
        self.router = indexed


class IndexedRoutingMiddleware(RoutingMiddleware):
    def add_api(self, specification, base_path=None, arguments=None, **kwargs) -> None:
        """Connexion's `add_api` with the indexed API router (see the module docstring)."""
        api = IndexedRoutingAPI(
            specification, base_path=base_path, arguments=arguments, next_app=self.app, **kwargs
        )
        for route in self.router.routes:  # chain APIs sharing a base path, as Connexion does
            if isinstance(route, Mount) and route.path == api.base_path:
                route.app.default = api.router
        self.router.mount(api.base_path, app=api.router)


class DocsOnlySwaggerUI(SwaggerUIMiddleware):
    def _prefixes(self) -> tuple[str, ...]:
        """The literal start of every docs route (without a trailing slash, so that Starlette's
        slash redirects still happen), recomputed when an API is added."""
        if getattr(self, "_for_routes", None) != len(self.router.routes):
            prefixes = set()
            for mount in self.router.routes:
                for route in getattr(mount, "routes", [mount]):
                    path = mount.path + route.path if mount is not route else route.path
                    prefixes.add(path.split("{", 1)[0].rstrip("/") or "/")
            self._for_routes, self._docs_prefixes = len(self.router.routes), tuple(prefixes)
        return self._docs_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(self._prefixes()):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)
