"""scripts/check_breaking.py: every rule fails on a small before/after pair, additive changes pass,
and the command compares with the last `v*` tag (or passes when there is none)."""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys

import pytest
import yaml

from tessera.core.settings import ROOT
from tessera.web.contract import SPEC_PATH

_spec = importlib.util.spec_from_file_location("check_breaking", ROOT / "scripts/check_breaking.py")
check_breaking = importlib.util.module_from_spec(_spec)
sys.modules["check_breaking"] = check_breaking  # dataclasses look their module up there
_spec.loader.exec_module(check_breaking)

BEFORE = yaml.safe_load(
    """
openapi: 3.0.3
info: {title: Widgets, version: 1.2.0}
security: [{bearerAuth: []}, {apiKeyAuth: []}]
paths:
  /v1/widgets:
    post:
      operationId: create_widget
      requestBody:
        required: true
        content:
          application/json:
            schema: {$ref: "#/components/schemas/WidgetCreate"}
      responses:
        "201":
          description: Created.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/WidgetResponse"}
  /v1/widgets/{widget_id}:
    parameters:
      - {name: widget_id, in: path, required: true, schema: {type: string}}
    get:
      operationId: get_widget
      parameters:
        - {name: expand, in: query, schema: {type: string, enum: [owner, tags]}}
      responses:
        "200":
          description: The widget.
          headers:
            ETag: {schema: {type: string}}
          content:
            application/json:
              schema: {$ref: "#/components/schemas/WidgetResponse"}
        "404": {description: Not found.}
components:
  securitySchemes:
    bearerAuth: {type: http, scheme: bearer}
    apiKeyAuth: {type: apiKey, in: header, name: X-API-Key}
  schemas:
    WidgetCreate:
      type: object
      required: [name]
      properties:
        name: {type: string, maxLength: 100}
        size: {type: integer, minimum: 0}
        color: {type: string, enum: [red, blue]}
    Widget:
      type: object
      required: [id, name, status]
      properties:
        id: {type: string}
        name: {type: string}
        status: {type: string, enum: [active, archived]}
        size: {type: integer}
        created_at: {type: string, format: date-time}
        parts: {type: array, items: {$ref: "#/components/schemas/Widget"}}
    WidgetResponse:
      type: object
      required: [data]
      properties:
        data: {$ref: "#/components/schemas/Widget"}
"""
)


def _schemas(doc):
    return doc["components"]["schemas"]


def _get(doc):
    return doc["paths"]["/v1/widgets/{widget_id}"]["get"]


def _post(doc):
    return doc["paths"]["/v1/widgets"]["post"]


BREAKING = {
    "removed-operation": lambda d: d["paths"]["/v1/widgets"].pop("post"),
    "changed-operation-id": lambda d: _get(d).update(operationId="fetch_widget"),
    "removed-parameter": lambda d: _get(d).pop("parameters"),
    "new-required-parameter": lambda d: _get(d)["parameters"].append(
        {"name": "region", "in": "query", "required": True, "schema": {"type": "string"}}
    ),
    "removed-request-field": lambda d: _schemas(d)["WidgetCreate"]["properties"].pop("color"),
    "removed-request-body": lambda d: _post(d)["requestBody"].update(
        content={"application/xml": {"schema": {"type": "object"}}}
    ),
    "new-required-request-field": lambda d: _schemas(d)["WidgetCreate"]["required"].append("size"),
    "tightened-request": lambda d: _schemas(d)["WidgetCreate"]["properties"]["name"].update(
        maxLength=50
    ),
    "removed-response": lambda d: _get(d)["responses"].pop("200"),
    "removed-response-header": lambda d: _get(d)["responses"]["200"].pop("headers"),
    "removed-response-field": lambda d: _schemas(d)["Widget"]["properties"].pop("size"),
    "optional-response-field": lambda d: _schemas(d)["Widget"]["required"].remove("status"),
    "changed-type": lambda d: _schemas(d)["Widget"]["properties"]["size"].update(type="string"),
    "removed-enum-value": lambda d: _schemas(d)["Widget"]["properties"]["status"].update(
        enum=["active"]
    ),
    "changed-security": lambda d: _get(d).update(security=[{"apiKeyAuth": []}]),
}


def _changed(mutate) -> dict:
    after = copy.deepcopy(BEFORE)
    mutate(after)
    return after


@pytest.mark.parametrize("rule", sorted(BREAKING))
def test_each_rule_reports_its_breaking_change(rule):
    changes = check_breaking.compare(BEFORE, _changed(BREAKING[rule]))
    assert rule in {c.rule for c in changes}, changes


def test_every_documented_rule_has_a_failing_case():
    documented = {
        line.split()[0]
        for line in check_breaking.__doc__.splitlines()
        if line.startswith("    ") and line.split()[0].count("-") >= 1
    }
    assert documented == set(BREAKING)


def _require_new_owner_field(d):
    create = _schemas(d)["WidgetCreate"]
    create["properties"]["owner_id"] = {"type": "string"}
    create["required"].append("owner_id")


def _make_create_public(d):
    _post(d)["security"] = []


# (case, change to the before document, change to the after document, the rule expected)
VARIANTS = [
    (
        "a field's format, reached through items and a recursive $ref",
        None,
        lambda d: _schemas(d)["Widget"]["properties"]["created_at"].update(format="date"),
        "changed-type",
    ),
    ("a new field that is required", None, _require_new_owner_field, "new-required-request-field"),
    (
        "a public operation that now needs credentials",
        _make_create_public,
        None,
        "changed-security",
    ),
    (
        "a response field that may now be null",
        None,
        lambda d: _schemas(d)["Widget"]["properties"]["name"].update(nullable=True),
        "changed-type",
    ),
    (
        "a request enum value removed",
        None,
        lambda d: _schemas(d)["WidgetCreate"]["properties"]["color"].update(enum=["red"]),
        "removed-enum-value",
    ),
    (
        "an optional parameter made required",
        None,
        lambda d: _get(d)["parameters"][0].update(required=True),
        "new-required-parameter",
    ),
]


@pytest.mark.parametrize(
    ("case", "before", "after", "rule"), VARIANTS, ids=[v[0] for v in VARIANTS]
)
def test_more_breaking_variants(case, before, after, rule):
    old = _changed(before) if before else BEFORE
    new = _changed(after) if after else BEFORE
    assert rule in {c.rule for c in check_breaking.compare(old, new)}, case


def _additive(d):
    d["paths"]["/v1/gadgets"] = {
        "get": {"operationId": "list_gadgets", "responses": {"200": {"description": "ok"}}}
    }
    _get(d)["parameters"].append({"name": "fields", "in": "query", "schema": {"type": "string"}})
    widget = _schemas(d)["Widget"]["properties"]
    widget["colour"] = {"type": "string"}  # new optional response field
    widget["status"]["enum"].append("draft")  # new response enum value
    create = _schemas(d)["WidgetCreate"]
    create["properties"]["name"]["maxLength"] = 200  # looser
    create["properties"]["size"]["type"] = "number"  # wider
    create["properties"]["label"] = {"type": "string"}  # new optional request field
    create["required"] = []  # nothing is required any more
    _get(d)["responses"]["200"]["headers"]["Cache-Control"] = {"schema": {"type": "string"}}
    _get(d)["responses"].pop("404")  # error responses are not a promise of the contract
    _get(d)["security"] = [{"bearerAuth": []}, {"apiKeyAuth": []}, {"oauth2": []}]


def test_additive_changes_are_not_breaking():
    assert check_breaking.compare(BEFORE, _changed(_additive)) == []


def test_renamed_path_parameter_is_a_renamed_parameter_not_a_removed_operation():
    after = copy.deepcopy(BEFORE)
    item = after["paths"].pop("/v1/widgets/{widget_id}")
    item["parameters"][0]["name"] = "id"
    after["paths"]["/v1/widgets/{id}"] = item
    rules = {c.rule for c in check_breaking.compare(BEFORE, after)}
    assert rules == {"removed-parameter"}


def test_the_current_contract_does_not_break_itself():
    doc = yaml.safe_load(SPEC_PATH.read_text())
    assert check_breaking.compare(doc, copy.deepcopy(doc)) == []


def test_major_version_bump_allows_breaking_changes():
    after = _changed(BREAKING["removed-operation"])
    assert not check_breaking.major_bumped(BEFORE, after)
    after["info"]["version"] = "2.0.0"
    assert check_breaking.major_bumped(BEFORE, after)


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A scratch repository with one commit of the BEFORE contract."""
    spec = tmp_path / "openapi" / "openapi.yaml"
    spec.parent.mkdir()
    spec.write_text(yaml.safe_dump(BEFORE))
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "one")
    monkeypatch.setattr(check_breaking, "ROOT", tmp_path)
    return tmp_path


def test_command_passes_without_a_released_contract(repo, capsys):
    (repo / "openapi" / "openapi.yaml").write_text(
        yaml.safe_dump(_changed(BREAKING["removed-operation"]))
    )
    assert check_breaking.main([]) == 0
    assert "no contract in openapi/released/" in capsys.readouterr().out


def test_command_compares_with_the_newest_released_contract(repo, capsys):
    released = repo / "openapi" / "released"
    released.mkdir()
    (released / "v1.yaml").write_text(yaml.safe_dump(BEFORE))
    spec = repo / "openapi" / "openapi.yaml"
    assert check_breaking.main([]) == 0
    spec.write_text(yaml.safe_dump(_changed(BREAKING["removed-response-field"])))
    assert check_breaking.main(["--spec", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "[removed-response-field]" in err and "field 'size' was removed" in err
    bumped = _changed(BREAKING["removed-response-field"])
    bumped["info"]["version"] = "2.0.0"
    spec.write_text(yaml.safe_dump(bumped))
    assert check_breaking.main(["--spec", str(spec)]) == 0
    assert "allowed by the new major version" in capsys.readouterr().out


def test_the_repository_carries_its_released_contract_and_keeps_to_it():
    """The guard bites on every clone: the v1 contract is committed, and the working contract
    breaks nothing in it."""
    released = check_breaking.last_released()
    assert released is not None and released.name == "v1.yaml"
    old = yaml.safe_load(released.read_text(encoding="utf-8"))
    new = yaml.safe_load((check_breaking.ROOT / check_breaking.SPEC).read_text(encoding="utf-8"))
    assert check_breaking.compare(old, new) == []
    assert check_breaking.compare(old, _without_an_operation(old)) != []


def _without_an_operation(document: dict) -> dict:
    changed = yaml.safe_load(yaml.safe_dump(document))
    path = next(iter(changed["paths"]))
    del changed["paths"][path]
    return changed


def test_command_refuses_an_unknown_base(repo):
    assert check_breaking.main(["--base", "no-such-ref"]) == 2
