"""The bundled OpenAPI document as the running server sees it: loaded once, served as written."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import orjson
import yaml

from tessera.core.settings import ROOT

SPEC_PATH = ROOT / "openapi" / "openapi.yaml"
_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")


@dataclass(frozen=True)
class Operation:
    operation_id: str
    method: str
    path: str
    spec: dict


class Contract:
    def __init__(self, path: Path = SPEC_PATH) -> None:
        self.path = path
        self.yaml_bytes = path.read_bytes()
        # libyaml's loader: the pure-Python one takes seconds on this document at every start.
        self.document: dict = yaml.load(self.yaml_bytes, Loader=yaml.CSafeLoader)

    @cached_property
    def json_bytes(self) -> bytes:
        return orjson.dumps(self.document)

    @cached_property
    def version(self) -> str:
        return self.document["info"]["version"]

    @cached_property
    def operations(self) -> dict[str, Operation]:
        found = {}
        for path, item in self.document["paths"].items():
            for method in _METHODS:
                if method in item:
                    op = item[method]
                    found[op["operationId"]] = Operation(op["operationId"], method, path, op)
        return found

    @cached_property
    def _templates(self) -> list[tuple[re.Pattern, list[str], int]]:
        compiled = []
        for path, item in self.document["paths"].items():
            segments = ["[^/]+" if s.startswith("{") else re.escape(s) for s in path.split("/")]
            pattern = re.compile("^" + "/".join(segments) + "$")
            methods = [m.upper() for m in _METHODS if m in item]
            literal = sum(1 for s in path.split("/") if s and not s.startswith("{"))
            compiled.append((pattern, methods, literal))
        return compiled

    def allowed_methods(self, request_path: str) -> list[str]:
        """Methods the spec documents for a concrete path (for a 405's `Allow` header)."""
        # OpenAPI matches concrete paths before templated ones (`/v1/users/me` before
        # `/v1/users/{user_id}`): the most specific matching paths define the resource.
        matching = [
            (lit, allowed)
            for pattern, allowed, lit in self._templates
            if pattern.match(request_path)
        ]
        best = max((lit for lit, _ in matching), default=0)
        methods: list[str] = []
        for lit, allowed in matching:
            if lit == best:
                methods += [m for m in allowed if m not in methods]
        if "GET" in methods and "HEAD" not in methods:
            methods.append("HEAD")
        return methods


@lru_cache(maxsize=1)
def get_contract() -> Contract:
    return Contract()
