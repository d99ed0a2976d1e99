"""schemathesis, with every check and every phase, against a running `tessera serve`.

The operations come from the served spec, so each new module is covered without editing this file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.services import ServerProcess

MAX_EXAMPLES = os.environ.get("TESSERA_CONTRACT_EXAMPLES", "40")


def test_running_server_conforms_to_its_contract(test_env, tmp_path):
    server = ServerProcess(test_env, tmp_path / "server.log").start()
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
            timeout=420,
        )
    finally:
        log = server.stop()
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:] + log[-2000:]
