"""Connexion's routing middleware with an indexed router.

Connexion 3.3 routes through a Starlette `Router` holding one `Route` per path and method, and a
Starlette router tries its routes one by one (a regex match each) until one matches: with over a
hundred operations that scan was 8 % of the CPU of GET /v1/users/me under `make bench` (py-spy).
A route can only match a request whose first two path segments equal its own literal ones and,
unless a parameter can hold a slash (Starlette's `path` convertor), with as many segments as its
own; so `IndexedRouter` tries just those routes (plus the few that start with a parameter), in
their original order: the first full match, and the partial match that yields 405, are the ones
the full scan would find; so is a route the path with or without its trailing slash would match
(a redirect). Non-HTTP scopes are Starlette's own code.

It plugs in where Connexion builds the router, by replacing `RoutingMiddleware` in the
`middlewares=` stack (tessera.web.app); `MiddlewarePosition.*_ROUTING` therefore names Connexion's
class, which is no longer in the stack.

Around that router Connexion still went through a Starlette router holding one `Mount` per API
(a regex match and a child scope), copied the scope into a context variable for its
`RoutingOperation`, and added seven frames that every resumption of the request passes through:
routing was still 10 % of the CPU of GET /health (py-spy). When a route of the API whose mount
takes the path matches it fully, `IndexedRoutingMiddleware` records the operation in the scope
itself, as `RoutingOperation` does, and calls the next middleware. The cases that need
Starlette's answers (405, slash redirects, no route) go through Connexion's code unchanged.

Connexion's Swagger UI middleware also routes every request through a router of its own (a
mount, a copy of the scope, a scan of its routes) before passing it on: 3 % of the CPU of GET
/v1/users/me. `DocsOnlySwaggerUI` sends only the paths its routes can match (or redirect) there.
"""

from __future__ import annotations

from connexion.middleware.abstract import ROUTING_CONTEXT
from connexion.middleware.routing import RoutingAPI, RoutingMiddleware, RoutingOperation
from connexion.middleware.swagger_ui import SwaggerUIMiddleware
from starlette.convertors import PathConvertor
from starlette.datastructures import URL
from starlette.responses import RedirectResponse
from starlette.routing import Match, Mount, Route, Router, get_route_path
from starlette.types import Receive, Scope, Send

_KEYS_MAX = 1024  # request prefixes remembered; more (a scan of random URLs) are not cached


def _key(path: str) -> tuple[str | int, ...]:
    return (*path.split("/", 3)[1:3], path.count("/"))


def _always_tried(route) -> bool:
    """Routes the index cannot place: other kinds, a parameter among the first two segments, or
    a parameter that can span segments."""
    return (
        not isinstance(route, Route)
        or "{" in "".join(route.path.split("/", 3)[1:3])
        or any(isinstance(c, PathConvertor) for c in route.param_convertors.values())
    )


class IndexedRouter(Router):
    def _candidates(self, path: str) -> list:
        key = _key(path)
        cached = self._index.get(key)
        if cached is None:
            cached = [
                route for route in self.routes if _always_tried(route) or _key(route.path) == key
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
        scope.setdefault("router", self)
        route_path = get_route_path(scope)
        partial = partial_scope = None
        for route in self._candidates(route_path):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial, partial_scope = route, child_scope
        if partial is not None:
            scope["route"] = partial
            scope.update(partial_scope)
            await partial.handle(scope, receive, send)
            return
        # No route: Starlette's slash redirect (to a path some route matches), else the default;
        # its code would scan every route twice more for an unknown path.
        if self.redirect_slashes and route_path != "/":
            redirect_scope = dict(scope)
            if route_path.endswith("/"):
                redirect_scope["path"] = redirect_scope["path"].rstrip("/")
            else:
                redirect_scope["path"] = redirect_scope["path"] + "/"
            candidates = self._candidates(get_route_path(redirect_scope))
            if any(route.matches(redirect_scope)[0] is not Match.NONE for route in candidates):
                await RedirectResponse(url=str(URL(scope=redirect_scope)))(scope, receive, send)
                return
        await self.default(scope, receive, send)


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

    def match(self, scope: Scope) -> tuple[str, RoutingOperation, dict] | None:
        """The API base path, operation and path parameters Connexion's router would route this
        HTTP request to, when a route matches it fully; None for anything else."""
        route_path = get_route_path(scope)
        for mount in self.router.routes:
            if not isinstance(mount, Mount) or not isinstance(mount.app, IndexedRouter):
                return None
            if "{" in mount.path:
                return None  # parameters in the base path: Starlette's matching
            if not route_path.startswith(mount.path + "/"):
                continue  # a Mount without parameters matches exactly these paths
            # The first mount to match takes the request, and with it the first full match.
            child = scope
            if mount.path:
                root_path = scope.get("root_path", "") + mount.path
                child = {**scope, "root_path": root_path}
            for route in mount.app._candidates(route_path[len(mount.path) :]):
                found, child_scope = route.matches(child)
                if found is Match.FULL:
                    operation = child_scope.get("endpoint")
                    if not isinstance(operation, RoutingOperation) or route.app is not operation:
                        return None
                    return mount.path, operation, child_scope["path_params"]
            return None
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        matched = self.match(scope) if scope["type"] == "http" else None
        if matched is None:
            await super().__call__(scope, receive, send)
            return
        base_path, operation, path_params = matched
        scope["path_params"] = path_params
        routing = scope.setdefault("extensions", {}).setdefault(ROUTING_CONTEXT, {})
        routing.update({"api_base_path": base_path, "operation_id": operation.operation_id})
        await operation.next_app(scope, receive, send)


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
