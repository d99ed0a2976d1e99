"""The `tessera` command."""

from __future__ import annotations

import subprocess
import sys

from tessera.contract import SPEC_PATH


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
