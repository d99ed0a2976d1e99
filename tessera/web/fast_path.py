"""Per-operation work done once at start-up instead of on every request.

Connexion 3.3's AsyncOperation rebuilds its decorator chain on every call (`AsyncOperation.fn` is
a property that wraps the handler anew, and the wrapper calls `decorate()` again, which inspects
the handler's signature). The chain depends only on the handler and the app's options, so we
build it once per operation. These subclasses plug in through Connexion's own classes
(AsyncApi.make_operation, AsyncASGIApp.api_cls); handlers still find the request in Connexion's
context variables exactly as before.

More per-request costs a profile of `make bench` showed (py-spy, GET /health and GET
/v1/users/me), removed the same way:
- the request body was parsed twice: by the body validator and again, with the standard library,
  for the handler's `body` argument. The validator leaves what it parsed in the scope, and an
  operation whose only argument is a JSON body gets it without Connexion's general argument
  resolution (path, query, context, files).
- the parameter decorator asks for the request's form files and body on every call, which makes
  Starlette inspect the content type and parse an (empty) form even for a GET. Whether an
  operation has a body, and whether it can carry files, is known from the contract at start-up.
  A handler without parameters on an operation without path parameters gets no arguments from
  Connexion at all, so it is called without resolving any (query, path, body, context).
- parameter names are turned into Python names (`inflection`, three regexes) on every request;
  the mapping is fixed per name, so it is memoised.
- the request handed to the decorators reached the ASGI scope through Connexion's context
  proxies (werkzeug `LocalProxy`, a context-variable look-up per attribute) and built a new URI
  parser each time; the operation now passes its own scope and receive, and its parser is built
  once.
- the response decorator looked up the operation's media types through the same proxies, and the
  handler's Content-Type with a helper that subscripts `typing` generics on every call; for an
  operation answering one media type, with no Content-Type from the handler, the answer is that
  type, known at start-up.
JSON answers are written by orjson (`Jsonifier` is Connexion's own hook for that).
"""

from __future__ import annotations

import asyncio
import functools
import typing as t
from copy import deepcopy
from functools import cached_property

import orjson
from connexion.apps.asynchronous import AsyncApi, AsyncASGIApp, AsyncOperation
from connexion.decorators import StarletteDecorator
from connexion.decorators.parameter import (
    AsyncParameterDecorator,
    inspect_function_arguments,
    prep_kwargs,
    pythonic,
    unwrap_decorators,
)
from connexion.decorators.response import AsyncResponseDecorator
from connexion.jsonifier import JSONEncoder, Jsonifier
from connexion.lifecycle import ConnexionRequest
from connexion.operations import AbstractOperation
from connexion.utils import is_json_mimetype, is_null, is_nullable
from starlette.types import Receive, Scope, Send

_FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")
# Where the body validator leaves the JSON body it parsed (`tessera.web.validation.BodyValidator`).
PARSED_BODY = "tessera.parsed_body"
_UNPARSED = object()
_pythonic = functools.lru_cache(maxsize=4096)(pythonic)
# Datetimes go to Connexion's encoder, which writes naive ones with a `Z` as before.
_ORJSON = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class ParameterDecorator(AsyncParameterDecorator):
    """Connexion's, minus the body and form look-ups an operation cannot need."""

    def __init__(self, *, operation: AbstractOperation, pythonic_params: bool, **kwargs) -> None:
        super().__init__(pythonic_params=pythonic_params, **kwargs)
        content = tuple(operation.consumes if operation.request_body else ())
        self.has_body = bool(content)
        self.has_form = any(media.startswith(_FORMS) for media in content)
        self.has_path_params = any(p["in"] == "path" for p in operation.parameters)
        if pythonic_params:
            self.sanitize_fn = _pythonic
        # An operation whose handler can take nothing but a JSON body (header and cookie
        # parameters are never passed to handlers).
        self.json_only = bool(content) and all(is_json_mimetype(media) for media in content)
        self.passes_parameters = any(p["in"] in ("path", "query") for p in operation.parameters)
        self.body_name = self.sanitize_fn(operation.body_name(content[0])) if content else None
        self.body_schema = operation.body_schema(content[0]) if content else {}

    def __call__(self, function: t.Callable) -> t.Callable:
        arguments, has_kwargs = inspect_function_arguments(unwrap_decorators(function))
        if not (arguments or has_kwargs or self.has_path_params):
            # Connexion passes path parameters always and everything else only by name.
            @functools.wraps(function)
            async def without_arguments(_request) -> t.Any:
                return await function()

            return without_arguments

        if (
            self.json_only
            and not self.passes_parameters
            and not has_kwargs
            and arguments == [self.body_name]
        ):

            @functools.wraps(function)
            async def with_body_only(request) -> t.Any:
                return await function(**{self.body_name: await self._json_body(request)})

            return with_body_only

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

    async def _json_body(self, request: ConnexionRequest) -> t.Any:
        """The body argument as Connexion's `_get_body_argument_json` makes it: None for an
        allowed null, the schema's default for no body."""
        body = request.scope.get("extensions", {}).get(PARSED_BODY, _UNPARSED)
        if body is _UNPARSED:
            body = await request.get_body()
        if is_nullable(self.body_schema) and is_null(body):
            return None
        if body is None:
            return deepcopy(self.body_schema.get("default", {}))
        return body


class ResponseDecorator(AsyncResponseDecorator):
    """Connexion's, answering the common case from the operation's media types read once."""

    def __init__(self, *, operation: AbstractOperation, **kwargs) -> None:
        super().__init__(**kwargs)
        produces = set(operation.produces)
        self.only_media_type = produces.pop() if len(produces) == 1 else None

    def _infer_content_type(self, data: t.Any, headers: t.Any) -> str | None:
        if (
            self.only_media_type is not None
            and isinstance(headers, dict)
            and not any(key.lower() == "content-type" for key in headers)
        ):
            return self.only_media_type
        return super()._infer_content_type(data, headers)


class OnceDecorator(StarletteDecorator):
    def __init__(self, *, operation: AbstractOperation, **kwargs) -> None:
        super().__init__(**kwargs)
        self.operation = operation
        parser_class = self.uri_parser_class or operation.uri_parser_class
        self.operation_uri_parser = parser_class(operation.parameters, operation.body_definition())

    @property
    def _parameter_decorator_cls(self) -> t.Callable[..., ParameterDecorator]:
        return functools.partial(ParameterDecorator, operation=self.operation)

    @property
    def _response_decorator_cls(self) -> t.Callable[..., ResponseDecorator]:
        return functools.partial(ResponseDecorator, operation=self.operation)

    @property
    def _sync_async_decorator(self) -> t.Callable[[t.Callable], t.Callable]:
        # Connexion's asks on every call whether the handler is a coroutine function.
        to_async = super()._sync_async_decorator
        return lambda function: (
            function if asyncio.iscoroutinefunction(function) else to_async(function)
        )

    def __call__(self, function: t.Callable) -> t.Callable:
        decorated = self.decorate(function)

        @functools.wraps(function)
        async def wrapper(scope: Scope, receive: Receive):
            return await decorated(
                ConnexionRequest(scope, receive, uri_parser=self.operation_uri_parser)
            )

        return wrapper


class CachedOperation(AsyncOperation):
    operation: AbstractOperation  # the contract's operation this one serves

    @classmethod
    def from_operation(cls, operation: AbstractOperation, **kwargs) -> CachedOperation:
        cached = super().from_operation(operation, **kwargs)
        cached.operation = operation
        return cached

    @cached_property
    def fn(self) -> t.Callable:  # type: ignore[override]
        return OnceDecorator(
            operation=self.operation,
            pythonic_params=self.pythonic_params,
            jsonifier=self.jsonifier,
        )(self._fn)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = await self.fn(scope, receive)
        return await response(scope, receive, send)


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
