"""schemathesis, with every check and every phase, against a running `tessera serve`.

The operations come from the served spec, so each new module is covered without editing this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tessera.core.settings import ROOT
from tests.support.factories import unique_email
from tests.support.services import ServerProcess

MAX_EXAMPLES = os.environ.get("TESSERA_CONTRACT_EXAMPLES", "20")
# Differs from every example in the spec, so fuzzed password changes cannot lock us out.
CONTRACT_PASSWORD = "Contract-Only-Pass-77!"


def test_running_server_conforms_to_its_contract(test_env, tmp_path):
    # The fuzzer learns the contract user's email from responses and tries random passwords with it;
    # a lockout would end the run, so this server never locks.
    server_env = {**test_env, "TESSERA_LOCKOUT_THRESHOLD": "1000000"}
    server = ServerProcess(server_env, tmp_path / "server.log").start()
    email = unique_email("contract")
    registered = httpx.post(
        f"{server.base_url}/v1/auth/register",
        json={
            "email": email,
            "password": CONTRACT_PASSWORD,
            "display_name": "Contract",
            "organization_name": "Contract Org",
        },
    )
    assert registered.status_code == 201, registered.text
    env = {
        **os.environ,
        "TESSERA_CONTRACT_EMAIL": email,
        "TESSERA_CONTRACT_PASSWORD": CONTRACT_PASSWORD,
    }
    try:
        result = subprocess.run(
            [
                str(Path(sys.executable).with_name("schemathesis")),
                "run",
                f"{server.base_url}/openapi.json",
                "--checks",
                "all",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                MAX_EXAMPLES,
                "--workers",
                "2",
                "--request-timeout",
                "10",
                "--seed",
                "20261123",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=ROOT,
            env=env,
        )
    finally:
        log = server.stop()
    # The server's tracebacks say why a case failed; the log's tail alone seldom holds them.
    errors = [line for line in log.splitlines() if '"level":"error"' in line]
    assert result.returncode == 0, (
        result.stdout[-8000:] + result.stderr[-2000:] + "\n".join(errors)[-6000:] + log[-2000:]
    )
