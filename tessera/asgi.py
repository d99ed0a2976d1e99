"""ASGI entry point for servers: `uvicorn tessera.asgi:app`."""

from tessera.app import create_app

app = create_app()
