"""The `tessera` command."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tessera.web.contract import SPEC_PATH
from tests.support.factories import login, unique_email


def test_openapi_prints_the_bundled_spec(test_env):
    out = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "openapi"], capture_output=True, check=True, env=None
    )
    assert out.stdout == SPEC_PATH.read_bytes()


def test_migrate_is_idempotent(test_env):
    from tessera.cli import main

    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0


def test_unknown_command_fails():
    result = subprocess.run(
        [sys.executable, "-m", "tessera.cli", "frobnicate"], capture_output=True
    )
    assert result.returncode == 2


def _cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tessera.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )


async def test_create_admin_then_sign_in(client):
    email = unique_email("admin")
    password = "Admin-Pass-For-Tests-42!"
    result = _cli(
        "create-admin",
        "--email",
        email,
        "--org-name",
        "Ops",
        env={"TESSERA_ADMIN_PASSWORD": password},
    )
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout  # a password the operator chose is never echoed
    tokens = await login(client, email, password)
    assert tokens["user"]["roles"] == ["owner"]
    assert tokens["user"]["email_verified"] is True
    again = _cli("create-admin", "--email", unique_email(), "--if-no-users", env={})
    assert again.returncode == 0 and "no admin created" in again.stdout


def _shown_password(stdout: str) -> str:
    match = re.search(r"Password \(shown once\): (\S+)", stdout)
    assert match, stdout
    return match.group(1)


async def _audit(client, token: str, action: str) -> list[dict]:
    response = await client.get(
        "/v1/audit", params={"action": action}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def test_create_admin_prints_a_password_that_signs_in_and_is_audited(client):
    email = unique_email("admin")
    result = _cli("create-admin", "--email", email, "--org-name", "Printed", env={})
    assert result.returncode == 0, result.stderr
    tokens = await login(client, email, _shown_password(result.stdout))
    assert tokens["user"]["roles"] == ["owner"]
    # The admin and the organization are in the audit trail, as a registration's are.
    (org_created,) = await _audit(client, tokens["access_token"], "organization.created")
    assert org_created["resource_id"] == tokens["user"]["org_id"]
    assert org_created["metadata"] == {"name": "Printed"}
    (user_created,) = await _audit(client, tokens["access_token"], "user.created")
    assert user_created["resource_id"] == tokens["user"]["id"]


async def test_reset_password_gives_a_new_password_and_ends_every_sign_in(client):
    email = unique_email("admin")
    old = "Admin-Pass-For-Tests-42!"
    created = _cli("create-admin", "--email", email, env={"TESSERA_ADMIN_PASSWORD": old})
    assert created.returncode == 0, created.stderr
    before = await login(client, email, old)

    reset = _cli("create-admin", "--reset-password", "--email", email, env={})
    assert reset.returncode == 0, reset.stderr
    new = _shown_password(reset.stdout)
    assert new != old
    signed_in = await login(client, email, new)
    refused = await client.post("/v1/auth/login", json={"email": email, "password": old})
    assert refused.status_code == 401
    refreshed = await client.post(
        "/v1/auth/refresh", json={"refresh_token": before["refresh_token"]}
    )
    assert refreshed.status_code == 401  # the sign-in held before the reset is revoked
    (changed,) = await _audit(client, signed_in["access_token"], "user.password_changed")
    assert changed["metadata"] == {"via": "operator_reset"}

    unknown = _cli("create-admin", "--reset-password", "--email", unique_email(), env={})
    assert unknown.returncode == 1 and "No user" in unknown.stderr
