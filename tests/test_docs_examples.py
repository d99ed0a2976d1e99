"""The docs a person reads are true: docs/getting-started.md runs against a live server.

Convention (also stated in the page): every ```sh block runs, in order, in one bash process with
`set -euo pipefail`, `TESSERA_URL` pointing at a fresh `tessera serve` and `WEBHOOK_URL` at a
local receiver; the ```python and ```js blocks that carry a `title="…"` are the signature
verifiers, run as written (python3, node) against the delivery that receiver got.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tessera.core import webhook_signing
from tessera.core.settings import ROOT
from tests.support.receiver import Receiver
from tests.support.services import ServerProcess

PAGE = ROOT / "docs" / "getting-started.md"
FENCE = re.compile(r"^```(\w*)[ \t]*(.*?)\n(.*?)^```[ \t]*$", re.M | re.S)
# Shell variables the page sets that the test reads back after the run.
EXPORTED = ("WEBHOOK_SECRET", "API_KEY", "ACCESS_TOKEN")


def blocks(language: str) -> list[tuple[str, str]]:
    """(info string after the language, code) of each fenced block of that language."""
    return [
        (info, code) for lang, info, code in FENCE.findall(PAGE.read_text()) if lang == language
    ]


def titled(language: str) -> str:
    found = [code for info, code in blocks(language) if "title=" in info]
    assert len(found) == 1, f"expected one titled ```{language} block in {PAGE.name}"
    return found[0]


@pytest.fixture(scope="module")
def server(test_env, tmp_path_factory):
    process = ServerProcess(test_env, tmp_path_factory.mktemp("docs-server") / "server.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def walkthrough(server, tmp_path_factory):
    """Run the page's shell blocks once; the signed delivery they cause and what they printed."""
    workdir = tmp_path_factory.mktemp("docs")
    script = ["set -euo pipefail"]
    script += [code for _, code in blocks("sh")]
    script += [f'printf "%s" "${name}" > "$DOCS_OUT/{name}"' for name in EXPORTED]
    (workdir / "walkthrough.sh").write_text("\n".join(script) + "\n")
    with Receiver() as receiver:
        run = subprocess.run(
            ["bash", str(workdir / "walkthrough.sh")],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=workdir,
            env={
                "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
                "HOME": str(workdir),
                "TESSERA_URL": server.base_url,
                "WEBHOOK_URL": receiver.url,
                "DOCS_OUT": str(workdir),
            },
        )
        assert run.returncode == 0, f"{run.stdout[-4000:]}\n{run.stderr[-4000:]}"
        deadline = time.monotonic() + 20
        while not receiver.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert receiver.received, "the test event the page sends never arrived"
        headers, body = receiver.received[0]
    return {
        "stdout": run.stdout,
        "headers": headers,
        "body": body,
        **{name: (workdir / name).read_text() for name in EXPORTED},
    }


def test_every_shell_example_runs_against_a_live_server(walkthrough):
    out = walkthrough["stdout"]
    assert '"code":"VALIDATION_ERROR"' in out.replace(" ", "") and "HTTP 422" in out
    assert walkthrough["API_KEY"].startswith("sk_test_")
    assert walkthrough["WEBHOOK_SECRET"].startswith("whsec_")
    assert "webhook.test" in out  # the delivery log lists the test event


def test_the_files_examples_store_refuse_serve_and_delete(walkthrough):
    out = walkthrough["stdout"]
    assert "same bytes" in out and "downloaded through the link" in out
    assert "HTTP 415" in out  # the executable renamed .png
    assert "HTTP 206" in out and "HTTP 204" in out


def test_the_delivery_is_really_signed_as_the_page_says(walkthrough):
    header = walkthrough["headers"]["tessera-signature"]
    assert re.fullmatch(r"t=\d+(,v1=[0-9a-f]{64})+", header)
    assert webhook_signing.verify(walkthrough["body"], header, walkthrough["WEBHOOK_SECRET"])


def _cases(walkthrough) -> list[tuple[str, bytes, str, str, bool]]:
    body, secret = walkthrough["body"], walkthrough["WEBHOOK_SECRET"]
    header = walkthrough["headers"]["tessera-signature"]
    now = int(time.time())
    return [
        ("the real delivery", body, header, secret, True),
        ("a changed body", body.replace(b"webhook.test", b"webhook.tost"), header, secret, False),
        ("another secret", body, header, "whsec_someone_else", False),
        (
            "a replay an hour later",
            body,
            webhook_signing.sign(body, [secret], now - 3600),
            secret,
            False,
        ),
        ("during rotation", body, webhook_signing.sign(body, ["whsec_old", secret]), secret, True),
        ("no timestamp", body, header.split(",", 1)[1], secret, False),
    ]


PYTHON_HARNESS = """
import sys
body = open(sys.argv[1], "rb").read()
print(verify_signature(body, sys.argv[2], sys.argv[3]))
"""

NODE_HARNESS = """
const { verifySignature } = require("./verifySignature.js");
const body = require("node:fs").readFileSync(process.argv[2]);
console.log(verifySignature(body, process.argv[3], process.argv[4]) ? "True" : "False");
"""


@pytest.mark.parametrize("language", ["python", "js"])
def test_signature_verifiers_on_the_page_accept_real_deliveries_only(
    language, walkthrough, tmp_path
):
    if language == "python":
        (tmp_path / "verify_signature.py").write_text(titled("python") + PYTHON_HARNESS)
        command = [sys.executable, str(tmp_path / "verify_signature.py")]
    else:
        node = shutil.which("node")
        assert node, "node is needed for the Node.js example (it is also needed by `make lint`)"
        (tmp_path / "verifySignature.js").write_text(titled("js"))
        (tmp_path / "check.js").write_text(NODE_HARNESS)
        command = [node, str(tmp_path / "check.js")]
    for case, body, header, secret, expected in _cases(walkthrough):
        (tmp_path / "body").write_bytes(body)
        result = subprocess.run(
            [*command, str(tmp_path / "body"), header, secret],
            capture_output=True,
            text=True,
            timeout=30,
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(expected), f"{language}: {case}"


def test_redoc_page_is_served_without_node_modules_or_a_cdn(server):
    base = server.base_url
    page = httpx.get(f"{base}/redoc")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<redoc spec-url="/openapi.json"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    scripts = re.findall(r'<script src="([^"]+)"', page.text)
    assert scripts == ["/redoc/redoc.standalone.js"]  # same origin, nothing from a CDN
    script = httpx.get(base + scripts[0])
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert script.content == (ROOT / "tessera/web/static/redoc/redoc.standalone.js").read_bytes()
    assert httpx.get(f"{base}/openapi.json").status_code == 200
