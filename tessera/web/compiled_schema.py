"""JSON schemas compiled twice: jsonschema-rs says fast whether a value is valid, jsonschema (the
semantics Connexion defines, and the per-field messages) runs only when it says no.

A profile of `make bench` (py-spy) put jsonschema at 8 % of the CPU of POST /v1/auth/refresh (a
`oneOf` body) and response validation at 20 % of GET /v1/users/me. jsonschema-rs checks the same
Draft 4 schema in native code. It only needs to be at least as strict as the reference: when it
accepts, the reference would too; when it refuses, the reference decides and explains, so a
value jsonschema-rs refuses and jsonschema accepts still passes (only slower).

What Connexion adds to Draft 4 is translated into plain Draft 4 for jsonschema-rs:
- `nullable: true` (and `x-nullable`) lets `null` pass `type` and `enum` at that level only;
- in responses any `writeOnly`/`x-writeOnly` property present is an error (`not: {}`).
Formats are checked by jsonschema's own format functions, so `uri`, `date-time`… mean exactly
what they meant before; jsonschema-rs also checks some formats jsonschema skips (`date`), which
only sends such values to the reference. `email` is the exception: jsonschema only looks for an
"@", so a body could store `a@b.com*`, which the answer echoing it then fails to conform to
(schemathesis, which reads formats as jsonschema-rs does, found it); both validators use
jsonschema-rs's check. Connexion hangs the spec's whole `components` on
every response schema (for `$ref`s, which its resolved spec no longer has); jsonschema-rs would
keep a copy per schema, so it gets them only when the schema still has a `$ref`.
"""

from __future__ import annotations

import functools
import typing as t

import jsonschema_rs
import orjson
from jsonschema import Draft4Validator, FormatChecker
from jsonschema.exceptions import ValidationError

_EMAIL = jsonschema_rs.validator_for({"type": "string", "format": "email"}, validate_formats=True)
FORMAT_CHECKER = FormatChecker()
FORMAT_CHECKER.checkers = {**Draft4Validator.FORMAT_CHECKER.checkers}


@FORMAT_CHECKER.checks("email")
def _is_email(instance: object) -> bool:
    return not isinstance(instance, str) or _EMAIL.is_valid(instance)


_RS_FORMATS = {
    name: functools.partial(FORMAT_CHECKER.conforms, format=name)
    for name in FORMAT_CHECKER.checkers
}
# Keywords whose value is one schema, a list of schemas, or a map of names to schemas.
_ONE = ("additionalProperties", "additionalItems", "not", "items")
_MANY = ("allOf", "anyOf", "oneOf", "items")
_NAMED = ("properties", "patternProperties", "definitions", "dependencies")


def for_rs(schema: t.Any, *, nullable: bool, write_only: bool) -> t.Any:
    """A copy of `schema` in plain Draft 4 (see the module docstring)."""
    if not isinstance(schema, dict):
        return schema
    if write_only and ("writeOnly" in schema or "x-writeOnly" in schema):
        return {"not": {}}
    walk = functools.partial(for_rs, nullable=nullable, write_only=write_only)
    out = dict(schema)
    for key in _ONE:
        if isinstance(out.get(key), dict):
            out[key] = walk(out[key])
    for key in _MANY:
        if isinstance(out.get(key), list):
            out[key] = [walk(s) for s in out[key]]
    for key in _NAMED:
        if isinstance(out.get(key), dict):
            out[key] = {name: walk(s) for name, s in out[key].items()}
    if nullable and (out.get("nullable") or out.get("x-nullable") is True):
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if isinstance(out.get("enum"), list) and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    return out


def _without_unused_components(schema: dict) -> dict:
    rest = {k: v for k, v in schema.items() if k != "components"}
    if "components" in schema and b'"$ref"' not in orjson.dumps(rest):
        return rest
    return schema


class CompiledSchema:
    def __init__(self, schema: dict, reference_cls: type, *, nullable: bool, write_only: bool):
        self.reference = reference_cls(schema, format_checker=FORMAT_CHECKER)
        try:
            self._fast: t.Any = jsonschema_rs.Draft4Validator(
                for_rs(
                    _without_unused_components(schema), nullable=nullable, write_only=write_only
                ),
                formats=_RS_FORMATS,
                validate_formats=True,
            )
        except Exception:  # a schema jsonschema-rs cannot compile is checked by jsonschema alone
            self._fast = None

    def is_valid_fast(self, instance: t.Any) -> bool:
        """True only when jsonschema-rs accepts (False means: ask the reference)."""
        if self._fast is None:
            return False
        try:
            return self._fast.is_valid(instance)
        except Exception:  # a value it cannot take (an integer beyond 64 bits, …)
            return False

    def errors(self, instance: t.Any) -> list[ValidationError]:
        if self.is_valid_fast(instance):
            return []
        return list(self.reference.iter_errors(instance))
