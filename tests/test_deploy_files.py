"""The deployment descriptions hold what operators rely on. (No Docker engine or helm binary is
available where this suite runs, so the files are checked statically; see the README.)"""

from __future__ import annotations

import re

import yaml

from tessera.settings import ROOT

HELM = ROOT / "deploy" / "helm" / "tessera"


def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2
    assert re.search(r"^USER tessera$", text, re.M)
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
