"""The deployment descriptions hold what operators rely on, checked with the real tools that
install from the package registries: hadolint (Dockerfile), the Compose Specification's JSON
schema (compose.yaml, via check-jsonschema) and the Helm 4 library's `helm lint` (helm-sdkpy).
No Docker engine or Kubernetes cluster is available where this suite runs; see the README."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tessera.core.settings import ROOT

HELM = ROOT / "deploy" / "helm" / "tessera"
BIN = Path(sys.executable).parent

# helm lint in a child process: the Helm library is Go, and its runtime stays out of pytest's.
HELM_LINT = """
import asyncio, json, sys
from helm_sdkpy import Configuration
from helm_sdkpy.chart import Lint
result = asyncio.run(Lint(Configuration(namespace="default")).run(sys.argv[1]))
print(json.dumps([m["Severity"] for m in result["Messages"]]))
"""
ERROR = 3  # Helm's support.ErrorSev; 2 is a warning, 1 informational


def _helm_lint(chart: Path) -> list[int]:
    pytest.importorskip("helm_sdkpy", reason="`make test` installs helm-sdkpy")
    done = subprocess.run(
        [sys.executable, "-c", HELM_LINT, str(chart)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def test_dockerfile_passes_hadolint():
    done = subprocess.run(
        [BIN / "hadolint", "--no-color", ROOT / "Dockerfile"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_file_matches_the_compose_specification():
    done = subprocess.run(
        [
            BIN / "check-jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            ROOT / "compose.yaml",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_helm_chart_passes_helm_lint(tmp_path):
    assert max(_helm_lint(HELM)) < 2  # nothing above informational
    # The same lint fails a chart whose template does not render.
    broken = tmp_path / "tessera"
    shutil.copytree(HELM, broken)
    with (broken / "templates" / "api.yaml").open("a") as template:
        template.write("{{ .Values.missing.deeper }}\n")
    assert ERROR in _helm_lint(broken)


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^USER 10001$", text, re.M)  # numeric: runAsNonRoot can check it
    assert "HEALTHCHECK" in text and "/health/live" in text
    assert "TESSERA_HOME=/app" in text


def test_compose_runs_two_apis_behind_a_proxy_with_a_worker():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"api1", "api2", "worker", "proxy", "postgres", "redis", "migrate"} <= set(services)
    assert services["worker"]["command"][0] == "worker"
    assert services["migrate"]["command"] == ["migrate"]
    env = services["api1"]["environment"]
    # Secrets come from the operator's environment, never from the file.
    for key in ("TESSERA_SECRET_KEY", "TESSERA_SIGNING_KEY"):
        assert env[key].startswith("${") and ":?" in env[key]
    nginx = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    assert "server api1:8080" in nginx and "server api2:8080" in nginx


def _templates() -> str:
    return "\n".join(p.read_text() for p in sorted((HELM / "templates").glob("*")))


def test_helm_chart_declares_the_production_objects():
    chart = yaml.safe_load((HELM / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "tessera"
    yaml.safe_load((HELM / "values.yaml").read_text())
    text = _templates()
    for kind in (
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "Secret",
        "Job",
    ):
        assert re.search(rf"^kind: {kind}$", text, re.M), kind
    assert len(re.findall(r"^kind: Deployment$", text, re.M)) == 2  # api and worker
    assert "path: /health/live" in text and "path: /health/ready" in text
    assert "helm.sh/hook: pre-install,pre-upgrade" in text
    assert "runAsNonRoot: true" in text


def test_helm_values_hold_no_secrets():
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    assert all(v == "" for v in values["secrets"].values())
