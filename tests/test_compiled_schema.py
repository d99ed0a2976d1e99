"""The fast schema check (jsonschema-rs) never accepts what Connexion's validators refuse.

Every request body, parameter and response schema of the contract is tried with its example and
with values broken field by field; whenever jsonschema-rs says "valid", jsonschema must agree.
"""

from __future__ import annotations

import copy
import itertools

import pytest
from connexion.json_schema import Draft4RequestValidator, Draft4ResponseValidator
from connexion.spec import Specification
from jsonschema import Draft4Validator

from tessera.web.compiled_schema import CompiledSchema
from tessera.web.contract import SPEC_PATH
from tests.support.factories import signed_in, unique_email

BROKEN = [None, True, 0, 1.5, -1, "", "x", "not-an-email", "a" * 300, [], [1, 1], {}, {"z": 1}]
VARIANTS = {
    Draft4RequestValidator: {"nullable": True, "write_only": False},
    Draft4ResponseValidator: {"nullable": True, "write_only": True},
    Draft4Validator: {"nullable": False, "write_only": False},
}


def _schemas() -> list[tuple[str, dict, type]]:
    spec = Specification.load(SPEC_PATH)
    out = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            where = f"{method.upper()} {path}"
            for media in (op.get("requestBody") or {}).get("content", {}).values():
                out.append((f"{where} body", media.get("schema", {}), Draft4RequestValidator))
            for param in [*item.get("parameters", []), *op.get("parameters", [])]:
                out.append((f"{where} {param['name']}", param["schema"], Draft4Validator))
            for status, response in op["responses"].items():
                for media in response.get("content", {}).values():
                    schema = media.get("schema", {})
                    out.append((f"{where} {status}", schema, Draft4ResponseValidator))
    return out


def _example(schema: dict):
    """The schema's example, or an envelope around the example of its `data`."""
    if "example" in schema:
        return schema["example"]
    data = schema.get("properties", {}).get("data", {})
    return {"data": data["example"]} if "example" in data else None


def _instances(schema: dict) -> list:
    example = _example(schema)
    values = [*BROKEN, example]
    if isinstance(example, dict):
        for name in itertools.islice(example, 30):
            values.append({k: v for k, v in example.items() if k != name})
            for broken in BROKEN:
                values.append({**copy.deepcopy(example), name: broken})
        data = example.get("data")
        if isinstance(data, dict):
            for name, broken in itertools.product(list(data)[:30], BROKEN):
                values.append({**example, "data": {**data, name: broken}})
    return values


SCHEMAS = _schemas()


def test_the_contract_gives_schemas_to_check():
    assert len(SCHEMAS) > 300


@pytest.mark.parametrize("cls", list(VARIANTS), ids=["request", "response", "parameter"])
def test_fast_acceptance_implies_reference_acceptance(cls):
    reference_accepted = fast_accepted = 0
    disagreements = []
    for where, schema, schema_cls in SCHEMAS:
        if schema_cls is not cls:
            continue
        compiled = CompiledSchema(schema, cls, **VARIANTS[cls])
        for value in _instances(schema):
            fast = compiled.is_valid_fast(value)
            if not list(compiled.reference.iter_errors(value)):
                reference_accepted += 1
                fast_accepted += fast
            elif fast:
                disagreements.append((where, value))
    assert not disagreements[:5]
    # Valid values take the fast path (a refusal would only cost the slow check).
    assert reference_accepted and fast_accepted / reference_accepted > 0.9


def test_nullable_and_write_only_follow_connexion():
    schema = {
        "type": "object",
        "properties": {
            "note": {"type": "string", "nullable": True},
            "kind": {"type": "string", "enum": ["a"], "nullable": True},
            "secret": {"type": "string", "writeOnly": True},
        },
    }
    request = CompiledSchema(schema, Draft4RequestValidator, nullable=True, write_only=False)
    response = CompiledSchema(schema, Draft4ResponseValidator, nullable=True, write_only=True)
    plain = CompiledSchema(schema, Draft4Validator, nullable=False, write_only=False)
    assert request.is_valid_fast({"note": None, "kind": None, "secret": "s"})
    assert response.errors({"note": None, "kind": None}) == []
    assert [e.message for e in response.errors({"secret": "s"})] == ["Property is write-only"]
    assert not plain.is_valid_fast({"note": None})
    assert [e.validator for e in plain.errors({"note": None})] == ["type"]


async def test_a_response_that_breaks_the_contract_is_a_500_envelope(client, monkeypatch):
    from models.identity import users

    caller = await signed_in(client)
    assert (await client.get("/v1/users/me", headers=caller.headers)).status_code == 200
    public = users.public
    monkeypatch.setattr(users, "public", lambda *a, **k: {**public(*a, **k), "extra": 1})
    response = await client.get("/v1/users/me", headers=caller.headers)
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "INTERNAL_ERROR"
    assert "extra" not in response.text


async def test_a_request_body_error_names_each_field(client):
    caller = await signed_in(client)
    response = await client.post(
        "/v1/projects", headers=caller.headers, json={"title": "x" * 201, "status": "x", "z": 1}
    )
    assert response.status_code == 422
    details = {(d["field"], d["code"]) for d in response.json()["error"]["details"]}
    assert details == {("title", "TOO_LONG"), ("status", "INVALID_VALUE"), ("z", "UNKNOWN_FIELD")}


async def test_an_email_format_is_the_address_the_answer_can_echo(client):
    owner = await signed_in(client)
    path = f"/v1/organizations/{owner.organization['id']}/invitations"
    for bad in ("0@0.com*", "no-at-sign", "two@@example.com"):
        refused = await client.post(path, headers=owner.headers, json={"email": bad})
        assert refused.status_code == 422, bad
        assert refused.json()["error"]["details"][0]["field"] == "email"
    accepted = await client.post(path, headers=owner.headers, json={"email": unique_email()})
    assert accepted.status_code == 201
