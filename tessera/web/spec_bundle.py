"""Build the single-file contract `openapi/openapi.yaml` from the sources in `openapi/src/`.

    openapi/src/openapi.yaml        info, servers, tags, security
    openapi/src/paths/<tag>.yaml     path -> path item, one file per tag
    openapi/src/components/*.yaml    section -> name -> component

Fragments use local `#/components/...` references, which are valid in the merged document, so the
bundle keeps every `$ref` to a named component (SDK generators name their models after them).

The bundler also adds the error responses every operation can produce, in one place instead of
by hand on each operation: 422 (strict validation rejects unknown parameters anywhere), 500,
429 under `/v1`, 400/413/415 with a request body, 401/403 when the operation is secured, and 404
when the path has parameters; every POST also documents the `Idempotency-Key` header and its
409. Responses under `/v1` declare the rate-limit headers. An operation that documents one of
these itself keeps its own.
Shared responses and headers that nothing references are left out of the bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")

STANDARD_RESPONSES = {
    "400": "BadRequest",
    "401": "Unauthorized",
    "403": "Forbidden",
    "404": "NotFound",
    "413": "PayloadTooLarge",
    "415": "UnsupportedMediaType",
    "422": "ValidationError",
    "409": "Conflict",
    "429": "RateLimited",
    "500": "InternalError",
}


RATE_LIMIT_HEADERS = ["X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"]


class BundleError(ValueError):
    pass


def _load(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise BundleError(f"{path}: top level must be a mapping")
    _check_flow_commas(data, str(path))
    return data


def _check_flow_commas(node: Any, where: str) -> None:
    """An unquoted comma inside a `{…}` value silently becomes a new key with a null value."""
    if isinstance(node, dict):
        for key, value in node.items():
            if value is None and isinstance(key, str) and " " in key:
                raise BundleError(f"{where}: stray key '{key}' (quote values that hold commas)")
            _check_flow_commas(value, where)
    elif isinstance(node, list):
        for item in node:
            _check_flow_commas(item, where)


def _merge_unique(target: dict, items: dict, where: str) -> None:
    for key, value in items.items():
        if key in target:
            raise BundleError(f"{where}: '{key}' is defined twice")
        target[key] = value


def _standard_codes(path: str, operation: dict, global_security: list) -> list[str]:
    security = operation.get("security", global_security)
    codes = ["422", "500"]
    if path.startswith("/v1/"):
        codes.append("429")
    if "requestBody" in operation:
        codes += ["400", "413", "415"]
    if security:
        codes += ["401", "403"]
    if "{" in path:
        codes.append("404")
    return sorted(codes)


def _add_standard_responses(doc: dict) -> None:
    global_security = doc.get("security", [])
    for path, item in doc.get("paths", {}).items():
        for method in HTTP_METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            codes = _standard_codes(path, operation, global_security)
            if method == "post":
                codes.append("409")
                params = operation.setdefault("parameters", [])
                params.append({"$ref": "#/components/parameters/IdempotencyKey"})
            for code in codes:
                responses.setdefault(
                    code, {"$ref": f"#/components/responses/{STANDARD_RESPONSES[code]}"}
                )
            operation["responses"] = dict(sorted(responses.items()))
            headers = ["X-Request-Id"]
            if path.startswith("/v1/"):
                headers += RATE_LIMIT_HEADERS
            for response in operation["responses"].values():
                if "$ref" not in response:
                    declared = response.setdefault("headers", {})
                    for name in headers:
                        declared.setdefault(name, {"$ref": f"#/components/headers/{name}"})


def _add_rate_limit_headers_to_errors(doc: dict) -> None:
    """Every answer of a `/v1` operation, errors included, carries the caller's allowance; the
    shared error responses say so (their header descriptions note it is `/v1` only)."""
    for response in doc.get("components", {}).get("responses", {}).values():
        content = response.get("content", {}).get("application/json", {})
        if content.get("schema", {}).get("$ref") == "#/components/schemas/Error":
            declared = response.setdefault("headers", {})
            for name in RATE_LIMIT_HEADERS:
                declared.setdefault(name, {"$ref": f"#/components/headers/{name}"})


def _drop_unused(doc: dict) -> None:
    """Shared responses and headers are a library; publish only those something references."""
    for section in ("responses", "headers"):  # responses first: they hold the header refs
        text = yaml.safe_dump(doc)
        entries = doc["components"].get(section, {})
        for name in list(entries):
            if f"#/components/{section}/{name}" not in text:
                del entries[name]


def build_bundle(src_dir: Path) -> dict[str, Any]:
    doc = _load(src_dir / "openapi.yaml")
    paths: dict[str, Any] = {}
    for file in sorted((src_dir / "paths").glob("*.yaml")):
        _merge_unique(paths, _load(file), str(file))
    components: dict[str, dict] = {}
    for file in sorted((src_dir / "components").glob("*.yaml")):
        for section, entries in _load(file).items():
            _merge_unique(components.setdefault(section, {}), entries, f"{file}:{section}")
    doc["paths"] = paths
    doc["components"] = {
        **doc.get("components", {}),
        **{k: dict(sorted(v.items())) for k, v in sorted(components.items())},
    }
    _add_standard_responses(doc)
    _add_rate_limit_headers_to_errors(doc)
    _drop_unused(doc)
    return doc


def dump(doc: dict[str, Any]) -> str:
    header = "# Generated by `make bundle` from openapi/src/; edit the sources, not this file.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
