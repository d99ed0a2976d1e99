"""Per-operation work done once at start-up instead of on every request.

Connexion 3.3's AsyncOperation rebuilds its decorator chain on every call (`AsyncOperation.fn` is
a property that wraps the handler anew, and the wrapper calls `decorate()` again, which inspects
the handler's signature). The chain depends only on the handler and the app's options, so we
build it once per operation. These subclasses plug in through Connexion's own classes
(AsyncApi.make_operation, AsyncASGIApp.api_cls); per-request state still comes from Connexion's
context variables exactly as before.

Two more per-request costs a profile of `make bench` showed (py-spy, GET /health and GET
/v1/users/me), removed the same way:
- the parameter decorator asks for the request's form files and body on every call, which makes
  Starlette inspect the content type and parse an (empty) form even for a GET. Whether an
  operation has a body, and whether it can carry files, is known from the contract at start-up.
- parameter names are turned into Python names (`inflection`, three regexes) on every request;
  the mapping is fixed per name, so it is memoised.
JSON answers are written by orjson (`Jsonifier` is Connexion's own hook for that).
"""

from __future__ import annotations

import asyncio
import functools
import typing as t
from functools import cached_property

import orjson
from connexion.apps.asynchronous import AsyncApi, AsyncASGIApp, AsyncOperation
from connexion.context import receive, scope
from connexion.decorators import StarletteDecorator
from connexion.decorators.parameter import (
    AsyncParameterDecorator,
    inspect_function_arguments,
    prep_kwargs,
    pythonic,
    unwrap_decorators,
)
from connexion.jsonifier import JSONEncoder, Jsonifier
from connexion.operations import AbstractOperation

_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
_pythonic = functools.lru_cache(maxsize=4096)(pythonic)
# Datetimes go to Connexion's encoder, which writes naive ones with a `Z` as before.
_ORJSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class ParameterDecorator(AsyncParameterDecorator):
    """Connexion's, minus the body and form look-ups an operation cannot need."""

    def __init__(self, *, has_body: bool, has_form: bool, pythonic_params: bool, **kwargs) -> None:
        super().__init__(pythonic_params=pythonic_params, **kwargs)
        self.has_body, self.has_form = has_body, has_form
        if pythonic_params:
            self.sanitize_fn = _pythonic

    def __call__(self, function: t.Callable) -> t.Callable:
        arguments, has_kwargs = inspect_function_arguments(unwrap_decorators(function))

        @functools.wraps(function)
        async def wrapper(request) -> t.Any:
            body = None
            if self.has_body:
                body = self._maybe_get_body(request, arguments=arguments, has_kwargs=has_kwargs)
                while asyncio.iscoroutine(body):
                    body = await body
            kwargs = prep_kwargs(
                request,
                request_body=body,
                files=await request.files() if self.has_form else {},
                arguments=arguments,
                has_kwargs=has_kwargs,
                sanitize=self.sanitize_fn,
            )
            return await function(**kwargs)

        return wrapper


class OnceDecorator(StarletteDecorator):
    def __init__(self, *, has_body: bool, has_form: bool, **kwargs) -> None:
        super().__init__(**kwargs)
        self.has_body, self.has_form = has_body, has_form

    @property
    def _parameter_decorator_cls(self) -> t.Callable[..., ParameterDecorator]:
        return functools.partial(ParameterDecorator, has_body=self.has_body, has_form=self.has_form)

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
    request_media: tuple[str, ...] = ()  # the media types of the operation's request body

    @classmethod
    def from_operation(cls, operation: AbstractOperation, **kwargs) -> CachedOperation:
        cached = super().from_operation(operation, **kwargs)
        cached.request_media = tuple(operation.consumes if operation.request_body else ())
        return cached

    @cached_property
    def fn(self) -> t.Callable:  # type: ignore[override]
        content = self.request_media
        return OnceDecorator(
            has_body=bool(content),
            has_form=any(media.startswith(_FORMS) for media in content),
            pythonic_params=self.pythonic_params,
            jsonifier=self.jsonifier,
        )(self._fn)


class OrjsonJsonifier(Jsonifier):
    """Connexion's Jsonifier with orjson's encoder; what orjson does not know (Decimal, …)
    falls back to Connexion's JSONEncoder."""

    def __init__(self) -> None:
        super().__init__()
        self._fallback = JSONEncoder().default

    def dumps(self, data, **kwargs) -> str:
        if kwargs:  # an explicit option (indent, …) asks for the standard encoder's behaviour
            return super().dumps(data, **kwargs)
        return orjson.dumps(data, default=self._fallback, option=_ORJSON).decode() + "\n"


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
