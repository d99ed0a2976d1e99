"""/redoc: the contract as a reference page a person reads (Swagger UI at /docs is for trying
calls). Redoc's script is vendored under tessera/web/static/redoc/ (scripts/vendor_redoc.py), so the
page needs neither node_modules nor a CDN."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

STATIC = Path(__file__).resolve().parent / "static" / "redoc"
SCRIPT_PATH = "/redoc/redoc.standalone.js"

# Redoc reads the spec from /openapi.json and builds its search index in a blob: worker.
CSP = (
    "default-src 'none'; script-src 'self'; worker-src blob:; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)

PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>Tessera API reference</title>
  <link rel="icon" href="data:,">
  <style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
  <redoc spec-url="/openapi.json" expand-responses="200,201" sort-required-props-first="true"
         hide-hostname="true"></redoc>
  <script src="{SCRIPT_PATH}"></script>
</body>
</html>
"""


async def page(_request: Request) -> Response:
    return HTMLResponse(PAGE, headers={"Content-Security-Policy": CSP})


async def script(_request: Request) -> Response:
    return FileResponse(
        STATIC / "redoc.standalone.js",
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )
