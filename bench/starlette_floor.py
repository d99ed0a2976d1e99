"""The floor for `make bench`: bare Starlette answering GET /health with no validation."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def health(_request):
    return JSONResponse({"data": {"status": "ok"}})


app = Starlette(routes=[Route("/health", health)])
