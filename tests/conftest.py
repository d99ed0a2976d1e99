"""Test fixtures: one throwaway database per run, the app served in-process over ASGI, and
helpers that start real `tessera` processes on 127.0.0.1."""

from __future__ import annotations

import os

import httpx
import pytest
from asgi_lifespan import LifespanManager

from tests.support.services import ThrowawayDatabase


@pytest.fixture(scope="session")
def test_env(tmp_path_factory):
    """Environment every test (and every child process) runs with."""
    workdir = tmp_path_factory.mktemp("tessera")
    database = ThrowawayDatabase(workdir)
    env = {
        "DATABASE_URL": database.create(),
        "TESSERA_ENV": "test",
        "TESSERA_DATA_DIR": str(workdir / "data"),
        "REDIS_URL": "",
        # The servers a test starts are instances of one deployment, so they share its public
        # address (and so the tokens' issuer) whatever port each listens on.
        "TESSERA_PUBLIC_URL": "http://127.0.0.1:8080",
        # Runs sharing the local Redis keep apart: no worker takes another run's jobs.
        "TESSERA_QUEUE_NAMESPACE": f"tessera-test-{workdir.name}-{os.getpid()}",
        # Limits high enough for the suite; tests/test_rate_limits.py tightens them itself.
        "TESSERA_RATE_LIMIT_TIERS": '{"free": 30, "basic": 60, "pro": 120, "enterprise": 300, '
        '"suite": 1000000}',
        "TESSERA_RATE_LIMIT_DEFAULT_TIER": "suite",
        "TESSERA_RATE_LIMIT_LOGIN": "1000000",
        "TESSERA_RATE_LIMIT_REGISTER": "1000000",
        "TESSERA_RATE_LIMIT_ANONYMOUS": "1000000",
        # Webhook retries in fractions of a second instead of hours.
        "TESSERA_WEBHOOK_MIN_BACKOFF_MS": "100",
        "TESSERA_WEBHOOK_MAX_BACKOFF_MS": "400",
        "TESSERA_WEBHOOK_MAX_RETRIES": "3",
        "TESSERA_WEBHOOK_DISABLE_AFTER": "2",
        "TESSERA_WEBHOOK_TIMEOUT": "3",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from tessera.core import db, settings

    settings.get_settings.cache_clear()
    db.database_url.cache_clear()
    from tessera.cli import main

    assert main(["migrate"]) == 0
    yield env
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    database.drop()


@pytest.fixture(scope="session")
async def app(test_env):
    from tessera.web.app import create_app

    application = create_app()
    async with LifespanManager(application, startup_timeout=30, shutdown_timeout=30) as manager:
        yield manager.app


@pytest.fixture
async def client(app):
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
