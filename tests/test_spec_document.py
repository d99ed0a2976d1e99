"""The contract itself: valid, bundled from its sources, and in step with the handlers."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import yaml
from openapi_spec_validator import validate

import handlers
from tessera.core.settings import ROOT
from tessera.web.contract import SPEC_PATH
from tessera.web.spec_bundle import build_bundle, dump

DOC = yaml.safe_load(SPEC_PATH.read_text())
METHODS = ("get", "put", "post", "patch", "delete")
OPERATIONS = [
    (path, method, op)
    for path, item in DOC["paths"].items()
    for method, op in item.items()
    if method in METHODS
]


def test_bundle_is_valid_openapi_3_0():
    assert DOC["openapi"].startswith("3.0.")
    validate(DOC)


def test_bundle_is_up_to_date_with_its_sources():
    assert SPEC_PATH.read_text() == dump(build_bundle(ROOT / "openapi" / "src")), (
        "openapi/openapi.yaml is stale: run `make bundle`"
    )


def test_every_operation_resolves_to_a_handler_and_every_handler_is_an_operation():
    spec_targets = {f"handlers.{op['tags'][0]}.{op['operationId']}" for _, _, op in OPERATIONS}
    handler_functions = set()
    for info in pkgutil.iter_modules(handlers.__path__):
        module = importlib.import_module(f"handlers.{info.name}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and not name.startswith("_"):
                handler_functions.add(f"handlers.{info.name}.{name}")
    assert spec_targets == handler_functions


def test_every_operation_is_documented():
    for path, method, op in OPERATIONS:
        where = f"{method.upper()} {path}"
        assert op.get("operationId"), where
        assert op.get("summary"), where
        assert op.get("tags"), where
        assert "500" in op["responses"], where
        for status, response in op["responses"].items():
            if "$ref" in response:
                assert response["$ref"].startswith("#/components/responses/"), where
                continue
            for media in response.get("content", {}).values():
                assert "example" in media or "examples" in media, f"{where} {status}"
                if status.startswith(("4", "5")):
                    assert media["schema"] == {"$ref": "#/components/schemas/Error"}, where


def test_operation_ids_are_unique_snake_case():
    ids = [op["operationId"] for _, _, op in OPERATIONS]
    assert len(ids) == len(set(ids))
    assert all(i == i.lower() and " " not in i and "-" not in i for i in ids)
