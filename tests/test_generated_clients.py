"""The contract as a product: SDKs generated from openapi/openapi.yaml work against the server.

- Python: openapi-python-client generates a client into a temporary directory (never committed);
  the test imports it and walks the main flows against a live `tessera serve`, reading every
  answer, errors included, through the generated typed models.
- TypeScript: openapi-typescript generates types, and `tsc --noEmit` checks tests/clients/usage.ts
  against them.

Steps that use an operation the contract does not have (yet) are left out, with a warning that
names them; the generated code itself is always checked.
"""

from __future__ import annotations

import importlib
import io
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from tessera.core.settings import ROOT
from tessera.web.contract import SPEC_PATH
from tests.support.factories import PASSWORD, unique_email
from tests.support.services import ServerProcess

PACKAGE = "tessera_client"
SPEC = yaml.safe_load(SPEC_PATH.read_text())
NODE_BIN = ROOT / "node_modules" / ".bin"


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def sdk(tmp_path_factory):
    """The generated Python package, imported from a temporary directory."""
    out = tmp_path_factory.mktemp("python-sdk")
    config = out / "config.yaml"
    config.write_text(
        f"project_name_override: tessera-client\npackage_name_override: {PACKAGE}\npost_hooks: []\n"
    )
    generator = Path(sys.executable).with_name("openapi-python-client")
    _run(
        [
            str(generator),
            "generate",
            "--path",
            str(SPEC_PATH),
            "--meta",
            "none",
            "--output-path",
            str(out / PACKAGE),
            "--config",
            str(config),
            "--fail-on-warning",  # every part of the contract must be expressible in the SDK
        ]
    )
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="module")
def server(test_env, tmp_path_factory):
    process = ServerProcess(test_env, tmp_path_factory.mktemp("sdk-server") / "server.log")
    process.start()
    yield process
    process.stop()


def _pascal(name: str) -> str:
    from openapi_python_client.strings import pascal_case

    return pascal_case(name)


def _snake(name: str) -> str:
    from openapi_python_client.strings import snake_case

    return snake_case(name)


class Api:
    """Generated operations found by what the contract says, not by hard-coded module paths."""

    def __init__(self, sdk) -> None:
        self.sdk = sdk
        self.models = importlib.import_module(f"{PACKAGE}.models")
        self.absent: list[str] = []

    def op(self, method: str, path: str):
        """The generated module of an operation, or None (noted) if the contract lacks it."""
        spec = SPEC["paths"].get(path, {}).get(method)
        if spec is None:
            self.absent.append(f"{method.upper()} {path}")
            return None
        tag, operation_id = _snake(spec["tags"][0]), _snake(spec["operationId"])
        return importlib.import_module(f"{PACKAGE}.api.{tag}.{operation_id}")

    def body(self, method: str, path: str, **overrides):
        """The operation's request model, built from the spec's own example plus overrides."""
        media = SPEC["paths"][path][method]["requestBody"]["content"]["application/json"]
        model = getattr(self.models, _pascal(media["schema"]["$ref"].rsplit("/", 1)[1]))
        return model.from_dict({**media["example"], **overrides})


def _ok(response, status: int):
    assert response.status_code == status, response.content[:2000]
    return response.parsed


def test_generated_models_are_named_after_the_component_schemas(sdk):
    models = importlib.import_module(f"{PACKAGE}.models")
    names = set(models.__all__)
    schemas = SPEC["components"]["schemas"]
    modelled = {_pascal(n) for n, s in schemas.items() if "properties" in s or "enum" in s}
    assert {"User", "Error", "ErrorBody", "ErrorDetail", "Organization"} <= names
    assert modelled <= names, sorted(modelled - names)

    # Inline enums of query parameters are the only operation-derived names allowed.
    inline_params = {
        _pascal(op["operationId"]) + _pascal(param["name"])
        for item in SPEC["paths"].values()
        for op in item.values()
        if isinstance(op, dict) and "operationId" in op
        for param in op.get("parameters", [])
        if "name" in param and "$ref" not in param.get("schema", {})
    }
    path_derived = re.compile(r"^(Get|Put|Post|Patch|Delete|Head|Options)V\d|Response\d{3}$|Body$")
    for name in sorted(names - modelled):
        derived_from_schema = any(name.startswith(_pascal(s)) for s in schemas)
        assert derived_from_schema or name in inline_params, f"unexplained model name {name}"
        assert not path_derived.search(name), f"path-derived model name {name}"


def test_python_client_walks_the_main_flows(sdk, server):
    api = Api(sdk)
    m = api.models
    anonymous = sdk.Client(base_url=server.base_url, raise_on_unexpected_status=True)

    # Register and sign in: typed request and response models.
    email = unique_email("sdk")
    register = api.op("post", "/v1/auth/register")
    registration = _ok(
        register.sync_detailed(
            client=anonymous,
            body=m.RegisterRequest(
                email=email, password=PASSWORD, display_name="SDK", organization_name="SDK Org"
            ),
        ),
        201,
    )
    assert isinstance(registration.data.user, m.User)
    assert isinstance(registration.data.organization, m.Organization)
    login = api.op("post", "/v1/auth/login")
    tokens = _ok(
        login.sync_detailed(client=anonymous, body=m.LoginRequest(email=email, password=PASSWORD)),
        200,
    ).data
    client = sdk.AuthenticatedClient(
        base_url=server.base_url, token=tokens.access_token, raise_on_unexpected_status=True
    )
    me = _ok(api.op("get", "/v1/users/me").sync_detailed(client=client), 200).data
    assert isinstance(me, m.User) and me.email == email
    assert me.id == registration.data.user.id

    refresh = api.op("post", "/v1/auth/refresh")
    pair = _ok(
        refresh.sync_detailed(
            client=anonymous, body=m.RefreshRequest(refresh_token=tokens.refresh_token)
        ),
        200,
    ).data
    assert pair.refresh_token != tokens.refresh_token

    # Projects: create one from the spec's example, then find it in the list.
    create_project = api.op("post", "/v1/projects")
    list_projects = api.op("get", "/v1/projects")
    if create_project and list_projects:
        project = _ok(
            create_project.sync_detailed(
                client=client, body=api.body("post", "/v1/projects", title="SDK project")
            ),
            201,
        ).data
        listed = _ok(list_projects.sync_detailed(client=client, limit=100), 200)
        assert project.id in [p.id for p in listed.data]

    # An API key, then a call authenticated by it through the X-API-Key scheme.
    create_key = api.op("post", "/v1/keys")
    list_users = api.op("get", "/v1/users")
    if create_key:
        key = _ok(
            create_key.sync_detailed(
                client=client,
                body=api.body(
                    "post",
                    "/v1/keys",
                    name="SDK key",
                    environment="test",
                    scopes=["users:read"],
                    allowed_ips=[],
                ),
            ),
            201,
        ).data
        assert key.secret.startswith("sk_test_")
        if list_users:
            as_key = sdk.AuthenticatedClient(
                base_url=server.base_url,
                token=key.secret,
                prefix="",
                auth_header_name="X-API-Key",
                raise_on_unexpected_status=True,
            )
            seen_by_key = _ok(list_users.sync_detailed(client=as_key, limit=5), 200)
            assert me.id in [u.id for u in seen_by_key.data]

    # Page through the organization's users with the cursor.
    create_user = api.op("post", "/v1/users")
    if list_users:
        created = {me.id}
        if create_user:
            for _ in range(2):
                body = api.body("post", "/v1/users", email=unique_email("sdk-member"))
                created.add(_ok(create_user.sync_detailed(client=client, body=body), 201).data.id)
        seen, cursor, pages = [], sdk.types.UNSET, 0
        while pages < 20:
            page = _ok(list_users.sync_detailed(client=client, limit=1, cursor=cursor), 200)
            pages += 1
            seen += [user.id for user in page.data]
            if not page.has_more:
                break
            cursor = page.next_cursor
        assert len(seen) == len(set(seen)) == page.total
        assert created <= set(seen) and pages == len(seen)

    # Files: a multipart upload with a typed body, then the bytes back (whole and a range).
    upload_file = api.op("post", "/v1/files")
    get_content = api.op("get", "/v1/files/{file_id}/content")
    if upload_file and get_content:
        png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
        stored = _ok(
            upload_file.sync_detailed(
                client=client,
                body=m.FileUpload(
                    file=sdk.types.File(
                        payload=io.BytesIO(png), file_name="logo.png", mime_type="image/png"
                    ),
                    purpose=m.FilePurpose.ATTACHMENT,
                ),
            ),
            201,
        ).data
        assert isinstance(stored, m.File) and stored.size == len(png)
        whole = get_content.sync_detailed(file_id=stored.id, client=client)
        assert whole.status_code == 200 and whole.content == png
        part = get_content.sync_detailed(file_id=stored.id, client=client, range_="bytes=0-3")
        assert part.status_code == 206 and part.content == png[:4]

    # Errors arrive as the typed Error envelope, request id included.
    sessions = api.op("get", "/v1/users/me/sessions")
    invalid = sessions.sync_detailed(client=client, limit=0)
    assert invalid.status_code == 422
    assert isinstance(invalid.parsed, m.Error)
    assert invalid.parsed.error.code == m.ErrorBodyCode.VALIDATION_ERROR
    assert [d.field for d in invalid.parsed.error.details] == ["limit"]
    assert invalid.parsed.error.request_id == invalid.headers["x-request-id"]

    get_webhook = api.op("get", "/v1/webhooks/{webhook_id}")
    missing = get_webhook.sync_detailed(webhook_id="whk_" + "0" * 26, client=client)
    assert missing.status_code == 404
    assert isinstance(missing.parsed, m.Error)
    assert missing.parsed.error.code == m.ErrorBodyCode.RESOURCE_NOT_FOUND

    if api.absent:
        warnings.warn(
            "SDK flow steps left out, their operations are not in the contract: "
            + ", ".join(api.absent),
            stacklevel=1,
        )


@pytest.fixture(scope="module")
def typescript_types(tmp_path_factory) -> Path:
    """`tessera.d.ts`, generated from the contract by openapi-typescript."""
    for tool in ("openapi-typescript", "tsc"):
        assert (NODE_BIN / tool).exists(), f"{tool} is missing: run `make install` (npm ci)"
    out = tmp_path_factory.mktemp("typescript") / "tessera.d.ts"
    _run(
        [str(NODE_BIN / "openapi-typescript"), str(SPEC_PATH), "-o", str(out)],
        cwd=ROOT,
        env={**os.environ, "REDOCLY_TELEMETRY": "off"},
    )
    return out


def _typescript_check(types: Path, workdir: Path, usage: str) -> subprocess.CompletedProcess:
    """Type-check `usage` (a usage.ts) against the generated types with `tsc --noEmit`."""
    shutil.copyfile(types, workdir / "tessera.d.ts")
    shutil.copyfile(ROOT / "tests" / "clients" / "tsconfig.json", workdir / "tsconfig.json")
    (workdir / "usage.ts").write_text(usage)
    return subprocess.run(
        [str(NODE_BIN / "tsc"), "--noEmit", "-p", str(workdir / "tsconfig.json")],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_typescript_types_type_check(typescript_types, tmp_path):
    """openapi-typescript's output, used by tests/clients/usage.ts, passes `tsc --noEmit`."""
    usage = (ROOT / "tests" / "clients" / "usage.ts").read_text()
    checked = _typescript_check(typescript_types, tmp_path, usage)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_typescript_check_can_fail(typescript_types, tmp_path):
    """A usage that contradicts the contract is reported, so the check above means something."""
    checked = _typescript_check(
        typescript_types,
        tmp_path,
        'import type { components } from "./tessera";\n'
        'export const user: components["schemas"]["User"] = { id: 42 };\n',
    )
    assert checked.returncode != 0 and "error TS" in checked.stdout, checked.stdout
