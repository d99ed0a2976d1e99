"""Request validators plugged into Connexion's `validator_map`.

Connexion stops at the first schema error and answers problem+json with one sentence. Ours report
every offending field as a `details` entry of a 422 VALIDATION_ERROR, answer 400 for bodies that
are not JSON (or not UTF-8), and compile each schema's validator once instead of on every request
(tessera.compiled_schema: jsonschema-rs first, jsonschema for the details). Responses are parsed
by orjson and checked the same way, with Connexion's error for a non-conforming one.
"""

from __future__ import annotations

import typing as t

import orjson
from connexion.datastructures import MediaTypeDict
from connexion.exceptions import NonConformingResponseBody
from connexion.json_schema import (
    Draft4RequestValidator,
    Draft4ResponseValidator,
    format_error_with_path,
)
from connexion.validators import (
    VALIDATOR_MAP,
    AbstractResponseBodyValidator,
    JSONRequestBodyValidator,
    JSONResponseBodyValidator,
    ParameterValidator,
)
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError as SchemaError
from starlette.types import Scope

from tessera.compiled_schema import CompiledSchema
from tessera.errors import BadRequest, Detail, ValidationFailed

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


def details_for(errors: t.Iterable[SchemaError], prefix: str = "") -> list[Detail]:
    out = []
    for error in sorted(errors, key=lambda e: list(map(str, e.absolute_path))):
        code = _CODES.get(str(error.validator), "INVALID")
        out.append(Detail(_field(prefix, error), code, error.message))
    return out


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
            return orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"The request body is not valid JSON: {exc}.") from None

    def _validate(self, body: t.Any) -> None:
        if body is None and not self._nullable:
            raise BadRequest("The request body must not be empty.")
        errors = compiled(self._schema).errors(body)
        if errors:
            raise ValidationFailed(
                "The request body does not match the schema.", details_for(errors)
            )


class ParamValidator(ParameterValidator):
    def validate_request(self, request) -> None:
        details: list[Detail] = []
        if self.strict_validation:
            unknown = self.validate_query_parameter_list(
                request, security_params=self.security_query_params
            )
            details += [
                Detail(name, "UNKNOWN_PARAMETER", f"Unknown query parameter '{name}'.")
                for name in sorted(unknown)
            ]
        sources = {
            "query": request.query_params,
            "path": request.path_params,
            "header": request.headers,
            "cookie": request.cookies,
        }
        for location, params in self.parameters.items():
            for param in params:
                details += self._check(param, sources[location].get(param["name"]), location)
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


class StreamedResponse(AbstractResponseBodyValidator):
    """Streamed downloads (JSON Lines exports) pass unvalidated: NDJSON matches `*/*json`, but it
    is many documents, not one, and validating would hold the whole file in memory."""

    def wrap_send(self, send):
        return send


def validator_map() -> dict:
    body = MediaTypeDict({**VALIDATOR_MAP["body"], "*/*json": BodyValidator})
    response = MediaTypeDict(
        {
            **VALIDATOR_MAP["response"],
            "*/*json": ResponseValidator,
            "application/x-ndjson": StreamedResponse,
        }
    )
    return {"parameter": ParamValidator, "body": body, "response": response}
