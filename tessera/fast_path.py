"""Per-operation work done once at start-up instead of on every request.

Connexion 3.3's AsyncOperation rebuilds its decorator chain on every call (`AsyncOperation.fn` is
a property that wraps the handler anew, and the wrapper calls `decorate()` again, which inspects
the handler's signature). The chain depends only on the handler and the app's options, so we
build it once per operation. These subclasses plug in through Connexion's own classes
(AsyncApi.make_operation, AsyncASGIApp.api_cls); per-request state still comes from Connexion's
context variables exactly as before.
"""

from __future__ import annotations

import functools
import typing as t
from functools import cached_property

from connexion.apps.asynchronous import AsyncApi, AsyncASGIApp, AsyncOperation
from connexion.context import receive, scope
from connexion.decorators import StarletteDecorator
from connexion.operations import AbstractOperation


class OnceDecorator(StarletteDecorator):
    def __call__(self, function: t.Callable) -> t.Callable:
        decorated = self.decorate(function)

        @functools.wraps(function)
        async def wrapper(*args, **kwargs):
            request = self.framework.get_request(
                uri_parser=self.uri_parser, scope=scope, receive=receive
            )
            return await decorated(request)

        return wrapper


class CachedOperation(AsyncOperation):
    @cached_property
    def fn(self) -> t.Callable:  # type: ignore[override]
        return OnceDecorator(pythonic_params=self.pythonic_params, jsonifier=self.jsonifier)(
            self._fn
        )


class CachedApi(AsyncApi):
    def make_operation(self, operation: AbstractOperation) -> AsyncOperation:
        return CachedOperation.from_operation(
            operation, pythonic_params=self.pythonic_params, jsonifier=self.jsonifier
        )


class CachedASGIApp(AsyncASGIApp):
    api_cls = CachedApi


def install(app) -> None:
    """Swap the AsyncApp's inner ASGI app for the caching one (before any API is added)."""
    inner = CachedASGIApp()
    app._middleware_app = inner
    app.middleware.app = inner
