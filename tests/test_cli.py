"""The `tessera` command."""

from __future__ import annotations

import os
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
