"""Fail when openapi/openapi.yaml breaks clients of the last released contract.

The baseline is the released contract committed in `openapi/released/` (the highest `vN.yaml`):
clones carry the branch, not tags, so the release lives in the tree. `--base REF` compares with
the bundled contract at a git ref instead. Without a released contract there is nothing to break
and the check passes, saying so.

What counts as breaking follows the version policy in README.md and GitHub's rules for its REST
API. Each rule has an id, printed with every finding:

    removed-operation          a path + method that existed is gone
    changed-operation-id       an operation's operationId was renamed or removed
    removed-parameter          a parameter (by name and location) was removed or renamed
    new-required-parameter     a new parameter is required, or an optional one became required
    removed-request-field      a property of a request body was removed
    removed-request-body       a request media type is no longer accepted
    new-required-request-field a request body property became required (new or existing), or
                               the body itself became required
    tightened-request          a request value must now satisfy a stricter minimum, maximum,
                               length, item count or pattern, or a closed enum
    removed-response           a documented 2xx status or one of its media types is gone
    removed-response-header    a header of a 2xx response is gone
    removed-response-field     a property of a 2xx response body was removed
    optional-response-field    a property that responses always had is no longer required
    changed-type               a type, format or nullability changed (request or response)
    removed-enum-value         an enum value was removed (request or response)
    changed-security           an operation no longer accepts a security scheme it accepted, or
                               a public operation now needs credentials

Breaking changes are allowed only in a new major version: when the major of `info.version`
went up, findings are printed but the check passes. Schemas are compared structurally after
resolving local `$ref`s (and merging `allOf`); `oneOf`/`anyOf` branches are not compared.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPEC = "openapi/openapi.yaml"
RELEASED = "openapi/released"
METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
# Request-side constraints where a larger (max*) or smaller (min*) value accepts less.
_UPPER_BOUNDS = ("maximum", "maxLength", "maxItems", "maxProperties")
_LOWER_BOUNDS = ("minimum", "minLength", "minItems", "minProperties")


@dataclass(frozen=True)
class Change:
    rule: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.where}: {self.message}"


class _Doc:
    """One contract, with `$ref` resolution."""

    def __init__(self, document: dict) -> None:
        self.document = document

    def resolve(self, node: Any) -> Any:
        seen = set()
        while isinstance(node, dict) and "$ref" in node:
            ref = node["$ref"]
            if ref in seen or not ref.startswith("#/"):
                return {}
            seen.add(ref)
            node = self.document
            for part in ref[2:].split("/"):
                node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
        return node

    def schema(self, node: Any) -> dict:
        """A schema with its refs resolved and its `allOf` parts merged into one."""
        node = self.resolve(node)
        if not isinstance(node, dict):
            return {}
        if "allOf" not in node:
            return node
        merged: dict = {k: v for k, v in node.items() if k != "allOf"}
        properties = dict(merged.get("properties", {}))
        required = list(merged.get("required", []))
        for part in node["allOf"]:
            part = self.schema(part)
            properties.update(part.get("properties", {}))
            required += [r for r in part.get("required", []) if r not in required]
            for key, value in part.items():
                if key not in ("properties", "required"):
                    merged.setdefault(key, value)
        if properties:
            merged["properties"] = properties
        if required:
            merged["required"] = required
        return merged

    def operations(self) -> dict[tuple[str, str], tuple[str, dict, list]]:
        """(normalized path, method) -> (path as written, operation, path-level parameters)."""
        found = {}
        for path, item in (self.document.get("paths") or {}).items():
            item = self.resolve(item)
            for method in METHODS:
                if method in item:
                    found[(_normalize(path), method)] = (
                        path,
                        item[method],
                        item.get("parameters", []),
                    )
        return found


def _normalize(path: str) -> str:
    """`/v1/webhooks/{webhook_id}` and `/v1/webhooks/{id}` are the same URL to a client."""
    parts = path.split("/")
    return "/".join("{}" if p.startswith("{") and p.endswith("}") else p for p in parts)


def _identity(raw: Any, resolved: dict) -> Any:
    """Named schemas by name (so recursion through `allOf` ends), inline ones by object."""
    if isinstance(raw, dict) and "$ref" in raw:
        return raw["$ref"]
    return id(resolved)


def _type(schema: dict) -> str | None:
    return schema.get("type")


class _Comparison:
    def __init__(self, old: dict, new: dict) -> None:
        self.old = _Doc(old)
        self.new = _Doc(new)
        self.changes: list[Change] = []

    def report(self, rule: str, where: str, message: str) -> None:
        self.changes.append(Change(rule, where, message))

    # -- operations --------------------------------------------------------------------------

    def run(self) -> list[Change]:
        new_ops = self.new.operations()
        new_ids = {op.get("operationId") for _, op, _ in new_ops.values()}
        for key, (path, old_op, old_path_params) in self.old.operations().items():
            method = key[1]
            where = f"{method.upper()} {path}"
            old_id = old_op.get("operationId")
            if key not in new_ops:
                self.report("removed-operation", where, "the operation was removed")
                if old_id and old_id not in new_ids:
                    self.report(
                        "changed-operation-id", where, f"operationId '{old_id}' no longer exists"
                    )
                continue
            new_path, new_op, new_path_params = new_ops[key]
            new_id = new_op.get("operationId")
            if old_id and old_id != new_id:
                self.report(
                    "changed-operation-id",
                    where,
                    f"operationId '{old_id}' became '{new_id}'"
                    if new_id
                    else f"operationId '{old_id}' was removed",
                )
            old_params = self._params(self.old, path, old_path_params, old_op)
            new_params = self._params(self.new, new_path, new_path_params, new_op)
            self.parameters(where, old_params, new_params)
            self.request_body(where, old_op.get("requestBody"), new_op.get("requestBody"))
            self.responses(where, old_op.get("responses", {}), new_op.get("responses", {}))
            self.security(where, old_op, new_op)
        return self.changes

    @staticmethod
    def _params(doc: _Doc, path: str, path_params: list, op: dict) -> dict[tuple, dict]:
        """Parameters by (location, name); path parameters by their place in the template."""
        places = [p[1:-1] for p in path.split("/") if p.startswith("{") and p.endswith("}")]
        merged: dict[tuple, dict] = {}
        for raw in [*path_params, *op.get("parameters", [])]:
            param = doc.resolve(raw)
            name, location = param.get("name", ""), param.get("in", "")
            if location == "path" and name in places:
                merged[("path", places.index(name))] = param
            else:
                merged[(location, name.lower() if location == "header" else name)] = param
        return merged

    def parameters(self, where: str, old: dict, new: dict) -> None:
        for key, old_param in old.items():
            label = f"{key[0]} parameter '{old_param.get('name')}'"
            if key not in new:
                self.report("removed-parameter", where, f"{label} was removed or renamed")
                continue
            new_param = new[key]
            if new_param.get("name") != old_param.get("name"):  # a path parameter
                renamed = f"{label} was renamed to '{new_param.get('name')}'"
                self.report("removed-parameter", where, renamed)
            if new_param.get("required") and not old_param.get("required"):
                self.report("new-required-parameter", where, f"{label} became required")
            self.schemas(
                f"{where} {label}",
                old_param.get("schema", {}),
                new_param.get("schema", {}),
                request=True,
            )
        for key, new_param in new.items():
            if key not in old and new_param.get("required"):
                label = f"{key[0]} parameter '{new_param.get('name')}'"
                self.report("new-required-parameter", where, f"new {label} is required")

    def request_body(self, where: str, old_raw: Any, new_raw: Any) -> None:
        if old_raw is None:
            if new_raw is not None and self.new.resolve(new_raw).get("required"):
                self.report("new-required-request-field", where, "a request body is now required")
            return
        old = self.old.resolve(old_raw)
        new = self.new.resolve(new_raw) if new_raw is not None else {}
        if new.get("required") and not old.get("required"):
            self.report("new-required-request-field", where, "the request body became required")
        new_content = new.get("content", {})
        for media, old_media in old.get("content", {}).items():
            if media not in new_content:
                self.report("removed-request-body", where, f"request body {media} is refused")
                continue
            self.schemas(
                f"{where} request body",
                old_media.get("schema", {}),
                new_content[media].get("schema", {}),
                request=True,
            )

    def responses(self, where: str, old: dict, new: dict) -> None:
        for status, old_raw in old.items():
            if not str(status).startswith("2"):
                continue
            if status not in new:
                self.report("removed-response", where, f"response {status} was removed")
                continue
            old_response = self.old.resolve(old_raw)
            new_response = self.new.resolve(new[status])
            new_headers = {k.lower() for k in new_response.get("headers", {})}
            for header in old_response.get("headers", {}):
                if header.lower() not in new_headers:
                    self.report(
                        "removed-response-header", where, f"{status} no longer sends {header}"
                    )
            new_content = new_response.get("content", {})
            for media, old_media in old_response.get("content", {}).items():
                if media not in new_content:
                    self.report("removed-response", where, f"{status} {media} was removed")
                    continue
                self.schemas(
                    f"{where} {status} response",
                    old_media.get("schema", {}),
                    new_content[media].get("schema", {}),
                    request=False,
                )

    def security(self, where: str, old_op: dict, new_op: dict) -> None:
        old_req = old_op.get("security", self.old.document.get("security", []))
        new_req = new_op.get("security", self.new.document.get("security", []))
        if not old_req:
            if new_req:
                self.report("changed-security", where, "the public operation now needs credentials")
            return
        if not new_req:
            return
        old_schemes = {name for requirement in old_req for name in requirement}
        new_schemes = {name for requirement in new_req for name in requirement}
        for scheme in sorted(old_schemes - new_schemes):
            self.report("changed-security", where, f"security scheme '{scheme}' is not accepted")

    # -- schemas -----------------------------------------------------------------------------

    def schemas(
        self,
        where: str,
        old_raw: Any,
        new_raw: Any,
        *,
        request: bool,
        _seen: set | None = None,
    ) -> None:
        seen = _seen if _seen is not None else set()
        old, new = self.old.schema(old_raw), self.new.schema(new_raw)
        key = (_identity(old_raw, old), _identity(new_raw, new))
        if key in seen:  # recursive schemas
            return
        seen.add(key)
        old_type, new_type = _type(old), _type(new)
        widened = request and (old_type, new_type) == ("integer", "number")
        if old_type and new_type and old_type != new_type and not widened:
            self.report("changed-type", where, f"type {old_type} became {new_type}")
            return
        if old.get("format") != new.get("format") and not (request and not new.get("format")):
            self.report(
                "changed-type",
                where,
                f"format {old.get('format') or '(none)'} became {new.get('format') or '(none)'}",
            )
        old_nullable, new_nullable = bool(old.get("nullable")), bool(new.get("nullable"))
        if request and old_nullable and not new_nullable:
            self.report("changed-type", where, "null is no longer accepted")
        if not request and new_nullable and not old_nullable:
            self.report("changed-type", where, "the value may now be null")
        self.enums(where, old, new, request=request)
        if request:
            self.constraints(where, old, new)
        self.properties(where, old, new, request=request, seen=seen)
        if "items" in old and "items" in new:
            self.schemas(f"{where}[]", old["items"], new["items"], request=request, _seen=seen)
        old_extra, new_extra = old.get("additionalProperties"), new.get("additionalProperties")
        if isinstance(old_extra, dict) and isinstance(new_extra, dict):
            self.schemas(f"{where}{{*}}", old_extra, new_extra, request=request, _seen=seen)

    def enums(self, where: str, old: dict, new: dict, *, request: bool) -> None:
        if "enum" not in new:
            return
        if "enum" not in old:
            if request:
                self.report("tightened-request", where, "the value is now limited to an enum")
            return
        removed = [v for v in old["enum"] if v not in new["enum"]]
        if removed:
            listed = ", ".join(repr(v) for v in removed)
            self.report("removed-enum-value", where, f"enum value(s) {listed} removed")

    def constraints(self, where: str, old: dict, new: dict) -> None:
        for name in _UPPER_BOUNDS:
            if name in new and (name not in old or new[name] < old[name]):
                self.report(
                    "tightened-request", where, f"{name} {old.get(name, '(none)')} -> {new[name]}"
                )
        for name in _LOWER_BOUNDS:
            if name in new and (name not in old or new[name] > old[name]):
                self.report(
                    "tightened-request", where, f"{name} {old.get(name, '(none)')} -> {new[name]}"
                )
        if "pattern" in new and new.get("pattern") != old.get("pattern"):
            self.report("tightened-request", where, f"pattern is now {new['pattern']!r}")

    def properties(self, where: str, old: dict, new: dict, *, request: bool, seen: set) -> None:
        old_props, new_props = old.get("properties", {}), new.get("properties", {})
        old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
        for name, old_prop in old_props.items():
            if name not in new_props:
                rule = "removed-request-field" if request else "removed-response-field"
                self.report(rule, where, f"field '{name}' was removed")
                continue
            if not request and name in old_required and name not in new_required:
                self.report("optional-response-field", where, f"field '{name}' may be missing")
            self.schemas(f"{where}.{name}", old_prop, new_props[name], request=request, _seen=seen)
        if request:
            for name in sorted(new_required - old_required):
                if name in new_props or name in old_props:
                    self.report(
                        "new-required-request-field", where, f"field '{name}' is now required"
                    )


def compare(old: dict, new: dict) -> list[Change]:
    """Every change from `old` to `new` that breaks a client written against `old`."""
    return _Comparison(old, new).run()


def _major(document: dict) -> int | None:
    version = str((document.get("info") or {}).get("version", ""))
    head = version.lstrip("v").split(".", 1)[0]
    return int(head) if head.isdigit() else None


def major_bumped(old: dict, new: dict) -> bool:
    old_major, new_major = _major(old), _major(new)
    return old_major is not None and new_major is not None and new_major > old_major


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def last_released() -> Path | None:
    """The newest released contract, `openapi/released/v<major>.yaml`."""
    found = [
        (int(path.stem[1:]), path)
        for path in (ROOT / RELEASED).glob("v*.yaml")
        if path.stem[1:].isdigit()
    ]
    return max(found)[1] if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--base", help="git ref of the baseline (default: the newest openapi/released/vN.yaml)"
    )
    parser.add_argument("--spec", default=str(ROOT / SPEC), help="the contract to check")
    args = parser.parse_args(argv)

    if args.base and _git("rev-parse", "--verify", "--quiet", f"{args.base}^{{commit}}").returncode:
        print(f"check_breaking: unknown git ref {args.base!r}", file=sys.stderr)
        return 2
    if args.base:
        base = args.base
        shown = _git("show", f"{base}:{SPEC}")
        if shown.returncode != 0:
            print(f"check_breaking: {base} has no {SPEC}; nothing released can break. OK")
            return 0
        old = yaml.safe_load(shown.stdout)
    else:
        released = last_released()
        if released is None:
            print(f"check_breaking: no contract in {RELEASED}/; nothing released can break. OK")
            return 0
        base = str(released.relative_to(ROOT))
        old = yaml.safe_load(released.read_text(encoding="utf-8"))
    new = yaml.safe_load(Path(args.spec).read_text(encoding="utf-8"))
    changes = compare(old, new)
    if not changes:
        print(f"check_breaking: no breaking changes since {base}. OK")
        return 0
    for change in changes:
        print(change, file=sys.stderr)
    if major_bumped(old, new):
        print(
            f"check_breaking: {len(changes)} breaking change(s) since {base}, allowed by the "
            "new major version.",
        )
        return 0
    print(
        f"check_breaking: {len(changes)} breaking change(s) since {base}. Breaking changes need a "
        "new major version (README.md, Versioning); otherwise make the change additive.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
