"""Request validators plugged into Connexion's `validator_map`.

Connexion stops at the first schema error and answers problem+json with one sentence. Ours report
every offending field as a `details` entry of a 422 VALIDATION_ERROR, answer 400 for bodies that
are not JSON (or not UTF-8), and compile each schema's validator once instead of on every request
(tessera.web.compiled_schema: jsonschema-rs first, jsonschema for the details). Responses are parsed
by orjson and checked the same way, with Connexion's error for a non-conforming one.

`RequestValidationMiddleware` replaces Connexion's in the middleware stack (tessera.web.app): on
every request Connexion 3.3 builds a URI parser and a parameter validator for the operation, and
reads the content type through a helper that subscripts `typing` generics at run time; all of that
depends only on the operation, so it is built once. Parameters are looked up only where the
operation declares some (the query string is not parsed for an operation without query
parameters, unless strict validation has a parameter to refuse).

An operation marked `x-streamed-body: true` (file uploads) has its body passed on unread: its
handler reads the stream itself and checks the parts as they arrive, since Connexion's multipart
validator keeps every message of the body in memory and parses the form before the handler runs.
Responses whose schema is `format: binary` (file downloads) are bytes, not documents: they pass
unvalidated, whatever their media type, as do responses with no schema for their media type.
"""

from __future__ import annotations

import json
import typing as t
from collections import Counter
from operator import attrgetter
from urllib.parse import parse_qsl

import orjson
from connexion import utils
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import NonConformingResponseBody, UnsupportedMediaTypeProblem
from connexion.json_schema import (
    Draft4RequestValidator,
    Draft4ResponseValidator,
    format_error_with_path,
)
from connexion.middleware import request_validation
from connexion.operations import AbstractOperation
from connexion.validators import (
    VALIDATOR_MAP,
    AbstractResponseBodyValidator,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
)
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError as SchemaError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from tessera.core.errors import BadRequest, Detail, ValidationFailed
from tessera.web.compiled_schema import CompiledSchema
from tessera.web.fast_path import PARSED_BODY

_CODES = {
    "required": "REQUIRED",
    "type": "INVALID_TYPE",
    "format": "INVALID_FORMAT",
    "pattern": "INVALID_FORMAT",
    "enum": "INVALID_VALUE",
    "minLength": "TOO_SHORT",
    "maxLength": "TOO_LONG",
    "minimum": "OUT_OF_RANGE",
    "maximum": "OUT_OF_RANGE",
    "minItems": "TOO_FEW_ITEMS",
    "maxItems": "TOO_MANY_ITEMS",
    "uniqueItems": "DUPLICATE_ITEMS",
    "additionalProperties": "UNKNOWN_FIELD",
    "readOnly": "READ_ONLY",
}

# Compiled validators keyed by the identity of the (long-lived) schema dict of each operation
# and the semantics asked for (Connexion's request, response or plain Draft 4 validator).
_compiled: dict[tuple[int, type], tuple[dict, CompiledSchema]] = {}


def compiled(schema: dict, cls: type = Draft4RequestValidator) -> CompiledSchema:
    entry = _compiled.get((id(schema), cls))
    if entry is None or entry[0] is not schema:
        nullable = cls is not Draft4Validator  # Connexion's validators honour `nullable`
        write_only = cls is Draft4ResponseValidator
        entry = (schema, CompiledSchema(schema, cls, nullable=nullable, write_only=write_only))
        _compiled[(id(schema), cls)] = entry
    return entry[1]


def _field(prefix: str, error: SchemaError) -> str:
    parts = [prefix] if prefix else []
    parts += [str(p) for p in error.absolute_path]
    if error.validator == "required" and isinstance(error.validator_value, list):
        missing = next((n for n in error.validator_value if n not in error.instance), None)
        if missing:
            parts.append(missing)
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if extra:
            parts.append(extra[0])
    return ".".join(parts) or "body"


def quoted(value: t.Any, limit: int = 24) -> str:
    """A value as a message may show it: a short prefix, never the whole input."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return repr(text if len(text) <= limit else text[:limit] + "…")


_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "an array",
    "object": "an object",
    "null": "null",
}
_FORMAT_NAMES = {
    "email": "an email address",
    "uri": "an absolute URI",
    "date-time": "an RFC 3339 date-time",
}


def _message(error: SchemaError) -> str:
    """What went wrong, written for a person: the rule broken, a short prefix of the value at
    most (jsonschema's own messages quote whole inputs and raw regexes)."""
    rule, expected, value = str(error.validator), error.validator_value, error.instance
    if rule == "required":
        return "This field is required."
    if rule == "type":
        names = [expected] if isinstance(expected, str) else list(expected)
        return f"Must be {' or '.join(_TYPE_NAMES.get(n, n) for n in names)}."
    if rule == "format":
        return f"{quoted(value)} is not {_FORMAT_NAMES.get(expected, f'a valid {expected}')}."
    if rule == "pattern":
        if isinstance(value, str) and not value.strip():
            return "Must not be blank."
        return f"{quoted(value)} contains characters or a shape this field does not accept."
    if rule == "enum":
        choices = ", ".join(str(choice) for choice in list(expected)[:12])
        return f"{quoted(value)} is not one of: {choices}."
    if rule == "minLength":
        return f"Must be at least {expected} character{'s' if expected != 1 else ''} long."
    if rule == "maxLength":
        return f"Must be at most {expected} characters long."
    if rule == "minimum":
        return f"Must be at least {expected}."
    if rule == "maximum":
        return f"Must be at most {expected}."
    if rule == "minItems":
        return f"Must have at least {expected} item{'s' if expected != 1 else ''}."
    if rule == "maxItems":
        return f"Must have at most {expected} items."
    if rule == "uniqueItems":
        return "Items must not repeat."
    if rule == "additionalProperties":
        return "This field is not part of the schema."
    if rule == "readOnly":
        return "This field is read-only."
    return "This value is not valid here."


def details_for(errors: t.Iterable[SchemaError], prefix: str = "") -> list[Detail]:
    out = []
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        code = _CODES.get(str(error.validator), "INVALID")
        out.append(Detail(_field(prefix, error), code, _message(error)))
    return out


def _refuse_duplicate_keys(pairs: list[tuple[str, t.Any]]) -> dict:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValidationFailed(
                "The request body repeats a key.",
                [Detail(key[:64], "DUPLICATE_KEY", "Give each key once: which one is meant?")],
            )
        seen.add(key)
    return dict(pairs)


class BodyValidator(JSONRequestBodyValidator):
    async def _parse(self, stream: t.AsyncGenerator[bytes, None], scope: Scope) -> t.Any:
        raw = b"".join([chunk async for chunk in stream])
        if not raw:
            return None
        if b"\\u0000" in raw:  # PostgreSQL text cannot hold NUL: refuse it at the door
            raise ValidationFailed(
                "The request body contains a NUL character.",
                [Detail("body", "INVALID_CHARACTER", "NUL (\\u0000) is not allowed.")],
            )
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"The request body is not valid JSON: {exc}.") from None
        if isinstance(body, dict | list) and raw.count(b":") > _keys(body):
            # orjson keeps the last of repeated keys; reparse to find them (a ':' inside a string
            # also gets here, at the cost of a second parse).
            json.loads(raw, object_pairs_hook=_refuse_duplicate_keys)
        scope.setdefault("extensions", {})[PARSED_BODY] = body  # the handler's, unparsed again
        return body

    def _validate(self, body: t.Any) -> None:
        if body is None and not self._nullable:
            raise BadRequest("The request body must not be empty.")
        errors = compiled(self._schema).errors(body)
        if errors:
            raise ValidationFailed(
                "The request body does not match the schema.", details_for(errors)
            )


def _keys(value: t.Any) -> int:
    """How many object keys `value` holds, at every depth."""
    if isinstance(value, dict):
        return len(value) + sum(_keys(v) for v in value.values())
    if isinstance(value, list):
        return sum(_keys(v) for v in value)
    return 0


# Body validators cached per operation, one per (media type, charset) a client sent.
_BODY_VALIDATORS_PER_OPERATION = 8

# Where each parameter location is read from a ConnexionRequest (parsed on first access).
_SOURCES = {
    "query": attrgetter("query_params"),
    "path": attrgetter("path_params"),
    "header": attrgetter("headers"),
    "cookie": attrgetter("cookies"),
}


class ParamValidator(ParameterValidator):
    def validate(self, scope: Scope) -> None:
        query_checked = self.strict_validation and scope["query_string"]
        if not self.parameters and not query_checked:
            return  # nothing to check, nor a request to build
        if not query_checked and self.parameters.keys() <= {"header"}:
            # Headers are checked as sent: read from the scope, no request object (~25 µs).
            self._raise_for(self._details({"header": Headers(scope=scope)}))
            return
        super().validate(scope)

    def validate_request(self, request) -> None:
        details: list[Detail] = []
        if self.strict_validation and request.scope["query_string"]:
            unknown = self.validate_query_parameter_list(
                request, security_params=self.security_query_params
            )
            details += [
                Detail(name[:64], "UNKNOWN_PARAMETER", f"Unknown query parameter {quoted(name)}.")
                for name in sorted(unknown)
            ]
        if request.scope["query_string"]:
            details += self._repeated(request.scope["query_string"])
        sources = {location: _SOURCES[location](request) for location in self.parameters}
        self._raise_for(details + self._details(sources))

    def _details(self, sources: dict[str, t.Any]) -> list[Detail]:
        details: list[Detail] = []
        for location, params in self.parameters.items():
            for param in params:
                details += self._check(param, sources[location].get(param["name"]), location)
        return details

    def _repeated(self, query_string: bytes) -> list[Detail]:
        """A parameter that takes one value given twice is ambiguous: refused, not resolved."""
        given = Counter(name for name, _ in parse_qsl(query_string.decode("latin-1"), True))
        return [
            Detail(param["name"], "REPEATED_PARAMETER", "Give this parameter once.")
            for param in self.parameters.get("query", ())
            if param.get("schema", {}).get("type") != "array" and given[param["name"]] > 1
        ]

    @staticmethod
    def _raise_for(details: list[Detail]) -> None:
        if details:
            raise ValidationFailed("The request parameters are invalid.", details)

    @staticmethod
    def _check(param: dict, value: t.Any, location: str) -> list[Detail]:
        name = param["name"]
        if value is None:
            if param.get("required"):
                return [Detail(name, "REQUIRED", f"Missing {location} parameter '{name}'.")]
            return []
        if isinstance(value, str) and "\x00" in value:
            return [Detail(name, "INVALID_CHARACTER", "NUL is not allowed.")]
        schema = param.get("schema", {})
        if value == "" and schema.get("nullable"):
            return []
        return details_for(compiled(schema, Draft4Validator).errors(value), name)


class RequestValidationOperation(request_validation.RequestValidationOperation):
    """Connexion's, with the parser, the parameter validator and the accepted media types of
    the operation built once."""

    def __init__(self, next_app: ASGIApp, *, operation: AbstractOperation, **kwargs: t.Any) -> None:
        super().__init__(next_app, operation=operation, **kwargs)
        self._uri_parser = operation.uri_parser_class(
            operation.parameters, operation.body_definition()
        )
        self._parameter_validator = self._validator_map["parameter"](
            operation.parameters,
            uri_parser=self._uri_parser,
            strict_validation=self.strict_validation,
            security_query_params=self.security_query_params,
        )
        consumes = operation.consumes
        self._consumes = MediaTypeDict([(c.lower(), None) for c in consumes]) if consumes else None
        self._consumes_exactly = {c.lower() for c in consumes or ()}  # skips the range matching
        self._body_validators: dict[tuple[str, str], t.Any] = {}
        self._streamed = streamed_body(operation)

    def extract_content_type(self, headers: list[tuple[bytes, bytes]]) -> tuple[str, str]:
        content_type = None
        for key, value in headers:  # ASGI header names are lower case
            if key == b"content-type":
                content_type = value.decode("latin-1")
        mime_type, encoding = utils.split_content_type(content_type)
        if mime_type is None:  # as Connexion: the operation's first media type, if any
            consumes = self._operation.consumes
            mime_type = consumes[0] if consumes else "application/octet-stream"
        # Media types and charsets are case-insensitive (RFC 9110 §8.3.1); the spec's are lower.
        return mime_type.lower(), (encoding or "utf-8").lower()

    def validate_mime_type(self, mime_type: str) -> None:
        if self._consumes is None or mime_type in self._consumes_exactly:
            return
        if mime_type not in self._consumes:
            accepted = " or ".join(self._operation.consumes)
            raise UnsupportedMediaTypeProblem(
                detail=f"Content-Type {quoted(mime_type, 60)} is not accepted here; use {accepted}."
            )

    def _body_validator(self, mime_type: str, encoding: str) -> t.Any:
        """The body validator for this media type and charset (None: no body to validate),
        built once for each of the first few pairs seen; clients choose them, so the cache
        is bounded."""
        key = (mime_type, encoding)
        if self._streamed:
            return None
        if key in self._body_validators:
            return self._body_validators[key]
        operation = self._operation
        schema = operation.body_schema(mime_type) if operation.request_body else None
        validator_class = self._validator_map["body"].get(mime_type) if schema else None
        validator = None
        if validator_class is not None:
            validator = validator_class(
                schema=schema,
                required=operation.request_body.get("required", False),
                nullable=utils.is_nullable(operation.body_definition(mime_type)),
                encoding=encoding,
                strict_validation=self.strict_validation,
                uri_parser=self._uri_parser,
            )
        if len(self._body_validators) < _BODY_VALIDATORS_PER_OPERATION:
            self._body_validators[key] = validator
        return validator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._parameter_validator.validate(scope)
        mime_type, encoding = self.extract_content_type(scope["headers"])
        self.validate_mime_type(mime_type)
        scope = _with_content_type(scope, mime_type, encoding)
        validator = self._body_validator(mime_type, encoding)
        if validator is not None:
            receive, scope = await validator.wrap_receive(receive, scope=scope)
        await self.next_app(scope, receive, send)


def _with_content_type(scope: Scope, mime_type: str, encoding: str) -> Scope:
    """`scope` with its Content-Type's media type and charset in lower case, as the layers after
    validation expect (Connexion's body parsing compares media types as strings); parameters
    such as a multipart `boundary` are kept as sent."""
    headers = scope["headers"]
    sent = next((value for key, value in headers if key == b"content-type"), None)
    if sent is None or sent == sent.lower():
        return scope
    parameters = sent.decode("latin-1").split(";")[1:]
    kept = [p.strip() for p in parameters if not p.strip().lower().startswith("charset=")]
    canonical = "; ".join([mime_type, *kept, f"charset={encoding}"]).encode("latin-1")
    rest = [(key, value) for key, value in headers if key != b"content-type"]
    return {**scope, "headers": [*rest, (b"content-type", canonical)]}


class RequestValidationAPI(request_validation.RequestValidationAPI):
    def make_operation(self, operation: AbstractOperation) -> RequestValidationOperation:
        return RequestValidationOperation(
            self.next_app,
            operation=operation,
            strict_validation=self.strict_validation,
            validator_map=self.validator_map,
        )


class RequestValidationMiddleware(request_validation.RequestValidationMiddleware):
    api_cls = RequestValidationAPI


class ResponseValidator(JSONResponseBodyValidator):
    """Connexion's JSON response validator, parsing with orjson and checking with the compiled
    schema; a non-conforming body raises Connexion's error with Connexion's message."""

    def _parse(self, stream: t.Generator[bytes, None, None]) -> t.Any:
        body = b"".join(stream).decode(self._encoding)
        if not body:
            return None
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise NonConformingResponseBody(str(exc)) from None

    def _validate(self, body: t.Any) -> None:
        errors = compiled(self._schema, Draft4ResponseValidator).errors(body)
        if errors:
            error = errors[0]
            raise NonConformingResponseBody(
                detail="Response body does not conform to specification. "
                f"{error.message}{format_error_with_path(error)}"
            )


def streamed_body(operation: AbstractOperation) -> bool:
    """Whether the operation's handler reads its request body itself (`x-streamed-body`)."""
    return bool(operation._operation.get("x-streamed-body"))


def _binary_passes(cls: type) -> type:
    """`cls`, letting responses whose schema is `format: binary` through unread; so too those
    the operation gives no schema for their media type (a download declared as `*/*` that
    happens to be JSON)."""

    class BinaryPasses(cls):
        def wrap_send(self, send):
            if not self._schema or self._schema.get("format") == "binary":
                return send
            return super().wrap_send(send)

    BinaryPasses.__name__ = BinaryPasses.__qualname__ = f"Binary{cls.__name__}"
    return BinaryPasses


class StreamedResponse(AbstractResponseBodyValidator):
    """Streamed downloads (JSON Lines exports) pass unvalidated: NDJSON matches `*/*json`, but it
    is many documents, not one, and validating would hold the whole file in memory."""

    def wrap_send(self, send):
        return send


def validator_map() -> dict:
    body = MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": BodyValidator})
    response = MediaTypeDict(
        {
            **{media: _binary_passes(cls) for media, cls in VALIDATOR_MAP["response"].items()},
            "*/*json": _binary_passes(ResponseValidator),
            "application/x-ndjson": StreamedResponse,
        }
    )
    return {"parameter": ParamValidator, "body": body, "response": response}
