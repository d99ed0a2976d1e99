"""/docs (Swagger UI) and /redoc in a real browser against a live `tessera serve`: every operation
and every named model of the contract is on the page, "Try it out" on GET /health gets a 200,
and the pages' Content-Security-Policy blocks nothing they need. Screenshots are kept under
test-artifacts/ (gitignored) for a person to look at."""

from __future__ import annotations

import json

import yaml

from tessera.core.settings import ROOT
from tests.support.browser import Browser, requires_chromium
from tests.support.services import ServerProcess

ARTIFACTS = ROOT / "test-artifacts"
pytestmark = requires_chromium


def _contract() -> tuple[set[str], set[str]]:
    spec = yaml.safe_load((ROOT / "openapi" / "openapi.yaml").read_text())
    methods = {"get", "post", "put", "patch", "delete"}
    operations = {
        op["operationId"]
        for item in spec["paths"].values()
        for method, op in item.items()
        if method in methods
    }
    return operations, set(spec["components"]["schemas"])


async def test_swagger_ui_and_redoc_work_in_headless_chromium(test_env, tmp_path):
    operations, models = _contract()
    server = ServerProcess(test_env, tmp_path / "server.log").start()
    try:
        async with Browser.launch(tmp_path / "chromium") as page:
            # Swagger UI: one block per operation (ids are operations-<tag>-<operationId>), one
            # entry per component schema in its Schemas section.
            await page.goto(f"{server.base_url}/docs/")
            shown = await page.wait_until(
                f"document.querySelectorAll('.opblock').length >= {len(operations)} && "
                "[...document.querySelectorAll('.opblock')].map(e => e.id)"
            )
            assert shown, "Swagger UI rendered no operations"
            assert {block.split("-", 2)[2] for block in shown} == operations
            names = await page.wait_until(
                "[...document.querySelectorAll('.models .model-container')]"
                ".map(e => e.getAttribute('data-name'))"
            )
            assert set(names) == models

            # Try it out: expand GET /health, switch to editing, execute, read the live status.
            health = "document.querySelector('#operations-system-get_health {}')"
            for control in (".opblock-summary-control", ".try-out__btn", ".execute"):
                assert await page.wait_until("!!" + health.format(control)), control
                await page.evaluate(health.format(control) + ".click()")
            live = ".live-responses-table tr.response"
            status = await page.wait_until(
                health.format(f"{live} .response-col_status") + "?.innerText.trim()"
            )
            assert status == "200"
            body = await page.evaluate(
                health.format(f"{live} .response-col_description pre") + ".innerText"
            )
            assert json.loads(body)["data"]["status"] == "ok"
            await page.evaluate(
                "document.querySelector('#operations-system-get_health').scrollIntoView()"
            )
            await page.screenshot(ARTIFACTS / "docs-swagger-ui.png")
            assert page.csp_violations() == []

            # Redoc: every operation has its section and the menu lists the tags.
            await page.goto(f"{server.base_url}/redoc")
            sections = await page.wait_until(
                "document.querySelectorAll('[data-section-id^=\"operation/\"]').length >= "
                f"{len(operations)} && [...document.querySelectorAll("
                "'[data-section-id^=\"operation/\"]')].map(e => e.dataset.sectionId)"
            )
            assert sections, "Redoc rendered no operations"
            assert {s.split("/", 1)[1] for s in sections} == operations
            text = await page.evaluate("document.body.innerText")
            assert "Tessera" in text and "request_id" in text  # the error envelope's fields
            await page.screenshot(ARTIFACTS / "docs-redoc.png")
            # Redoc's "API docs by Redocly" badge fetches its logo from Redocly's CDN; the CSP
            # blocks every third-party load on purpose, and nothing else may be blocked.
            blocked = [v for v in page.csp_violations() if "cdn.redoc.ly" not in v]
            assert blocked == []
    finally:
        server.stop()
