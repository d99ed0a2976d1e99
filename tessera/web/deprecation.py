"""Deprecation announced from the contract, never from handlers (RFC 9745, RFC 8594).

An operation marked `deprecated: true` in the spec answers every response with

    Deprecation: @1780272000            RFC 9745: since when (`x-deprecated-at`), or `true`
                                        when the spec gives no date
    Sunset: Tue, 01 Dec 2026 00:00:00 GMT
                                        RFC 8594: when it goes away (`x-sunset`), if planned
    Link: </redoc#tag/users/operation/get_me>; rel="deprecation"; type="text/html"
                                        where the docs explain it (`x-deprecation-link`
                                        overrides)

A request that uses a deprecated query parameter of a live operation (`offset`, replaced by
`cursor`) gets `Deprecation` and the `Link` to that operation's docs, which say what to use
instead. `x-deprecated-at` and `x-sunset` are RFC 3339 dates or date-times; `check()` refuses
bad ones at start-up. Under the version policy (README.md) a sunset is at least six months after
the deprecation.
"""

from __future__ import annotations

import datetime as dt
from email.utils import format_datetime
from urllib.parse import parse_qsl

from starlette.datastructures import MutableHeaders
from starlette.types import Scope

from tessera.web.contract import Contract, Operation, get_contract

DOCS_PATH = "/redoc"
MINIMUM_NOTICE = dt.timedelta(days=182)  # the version policy's six months


class DeprecationSpecError(ValueError):
    pass


def _moment(value: object, where: str) -> dt.datetime:
    """A YAML date, datetime or RFC 3339 string as an aware UTC datetime."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value)
        except ValueError:
            raise DeprecationSpecError(f"{where}: {value!r} is not an RFC 3339 date") from None
    else:
        raise DeprecationSpecError(f"{where}: {value!r} is not an RFC 3339 date")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _docs_link(operation: Operation) -> str:
    target = operation.spec.get("x-deprecation-link")
    if not target:
        tag = (operation.spec.get("tags") or ["default"])[0]
        target = f"{DOCS_PATH}#tag/{tag}/operation/{operation.operation_id}"
    return f'<{target}>; rel="deprecation"; type="text/html"'


def operation_headers(operation: Operation) -> dict[str, str]:
    """The headers a deprecated operation answers with; empty for a live one."""
    spec = operation.spec
    if not spec.get("deprecated"):
        return {}
    where = operation.operation_id
    since = spec.get("x-deprecated-at")
    headers = {
        "Deprecation": (
            f"@{int(_moment(since, f'{where} x-deprecated-at').timestamp())}" if since else "true"
        ),
        "Link": _docs_link(operation),
    }
    if spec.get("x-sunset"):
        headers["Sunset"] = format_datetime(_moment(spec["x-sunset"], f"{where} x-sunset"), True)
    return headers


def deprecated_query_parameters(contract: Contract, operation: Operation) -> set[str]:
    path_item = contract.document["paths"].get(operation.path, {})
    names = set()
    for raw in [*path_item.get("parameters", []), *operation.spec.get("parameters", [])]:
        param = raw
        if "$ref" in raw:
            param = contract.document
            for part in raw["$ref"][2:].split("/"):
                param = param.get(part, {})
        if param.get("in") == "query" and param.get("deprecated"):
            names.add(param["name"])
    return names


def response_headers(
    contract: Contract, operation_id: str | None, query: bytes, cache: dict | None = None
) -> dict[str, str]:
    operation = contract.operations.get(operation_id or "")
    if operation is None:
        return {}
    headers = operation_headers(operation)
    if headers or not query:
        return headers
    cache = {} if cache is None else cache
    key = (id(contract), operation.operation_id)
    if key not in cache:
        cache[key] = deprecated_query_parameters(contract, operation)
    deprecated = cache[key]
    if deprecated:
        used = {name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)}
        if used & deprecated:
            return {"Deprecation": "true", "Link": _docs_link(operation)}
    return {}


def check(contract: Contract) -> None:
    """Refuse a contract whose deprecation dates do not parse, or whose sunset gives less than
    the six months' notice of the version policy."""
    for operation in contract.operations.values():
        spec = operation.spec
        where = operation.operation_id
        if ("x-sunset" in spec or "x-deprecated-at" in spec) and not spec.get("deprecated"):
            raise DeprecationSpecError(f"{where}: x-sunset/x-deprecated-at need deprecated: true")
        operation_headers(operation)
        if spec.get("x-sunset") and spec.get("x-deprecated-at"):
            since = _moment(spec["x-deprecated-at"], where)
            if _moment(spec["x-sunset"], where) < since + MINIMUM_NOTICE:
                raise DeprecationSpecError(
                    f"{where}: x-sunset must be six months or more after x-deprecated-at"
                )


class DeprecationHeaders:
    """Adds the headers above to the responses of deprecated operations (a response-header hook
    of tessera.web.middleware.RequestContext). The operation is the one Connexion's router matched
    (recorded in the scope's extensions), so the contract is read per response and a
    deprecation needs no code."""

    def __init__(self) -> None:
        self._deprecated_parameters: dict = {}  # operation -> names; they do not change
        check(get_contract())

    def __call__(self, scope: Scope, headers: MutableHeaders) -> None:
        routing = scope.get("extensions", {}).get("connexion_routing") or {}
        notice = response_headers(
            get_contract(),
            routing.get("operation_id"),
            scope.get("query_string", b""),
            self._deprecated_parameters,
        )
        for name, value in notice.items():
            existing = headers.get(name) if name == "Link" else None
            headers[name] = f"{existing}, {value}" if existing else value
