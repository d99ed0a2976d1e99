"""What a first `make run` meets: the address it serves is the one its tokens, metadata and mails
name, and the embedded PostgreSQL lives and dies with the server."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import jwt
import psutil

from tests.support.factories import PASSWORD, unique_email
from tests.support.services import ServerProcess


def test_a_server_on_another_port_names_that_port_in_its_metadata_and_tokens(test_env, tmp_path):
    env = {**test_env, "TESSERA_PUBLIC_URL": "", "TESSERA_JWT_ISSUER": "", "PORT": "8080"}
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        assert server.port != 8080
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            metadata = http.get("/.well-known/oauth-authorization-server").json()
            email = unique_email("port")
            body = {"email": email, "password": PASSWORD, "display_name": "P"}
            assert http.post("/v1/auth/register", json=body).status_code == 201
            login = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
            token = login.json()["data"]["access_token"]
            # The token is accepted by the server that issued it for its own issuer.
            headers = {"Authorization": f"Bearer {token}"}
            assert http.get("/v1/users/me", headers=headers).status_code == 200
    finally:
        server.stop()
    assert metadata["issuer"] == server.base_url
    urls = {key: value for key, value in metadata.items() if key.endswith(("_endpoint", "_uri"))}
    assert urls and all(url.startswith(server.base_url + "/") for url in urls.values()), urls
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == server.base_url


def _postmaster(pgdata: Path) -> psutil.Process | None:
    """The embedded PostgreSQL running on `pgdata`, if any."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split()[0])
        process = psutil.Process(pid)
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    running = process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    return process if running and process.name() == "postgres" else None


def _gone(process: psutil.Process, timeout: float = 15.0) -> bool:
    try:
        process.wait(timeout)
    except psutil.TimeoutExpired:
        return False
    except psutil.NoSuchProcess:
        pass
    return True


def test_the_embedded_postgresql_stops_with_the_server_and_survives_a_killed_one(
    test_env, tmp_path
):
    data = tmp_path / "data"
    env = {**test_env, "DATABASE_URL": "", "TESSERA_DATA_DIR": str(data)}
    pgdata = data / "pg"
    log = tmp_path / "server.log"

    try:
        migrate = ServerProcess(env, log, "migrate").start(None)
        assert migrate.proc.wait(timeout=120) == 0, log.read_text()
        assert _postmaster(pgdata) is None  # a command that started it stopped it

        for stop in (signal.SIGTERM, signal.SIGINT):
            server = ServerProcess(env, log).start()
            postgres = _postmaster(pgdata)
            assert postgres is not None
            server.proc.send_signal(stop)
            server.proc.wait(timeout=30)
            assert _gone(postgres), f"PostgreSQL outlived the server stopped with {stop!r}"

        killed = ServerProcess(env, log).start()
        orphan = _postmaster(pgdata)
        killed.proc.kill()
        killed.proc.wait()
        assert orphan is not None and orphan.is_running()  # left behind, holding the data

        server = ServerProcess(env, log).start()  # takes the server over
        try:
            assert _postmaster(pgdata).pid == orphan.pid
            with httpx.Client(base_url=server.base_url, timeout=10) as http:
                body = {"email": unique_email("orphan"), "password": PASSWORD, "display_name": "O"}
                assert http.post("/v1/auth/register", json=body).status_code == 201
        finally:
            server.stop()
        assert _gone(orphan), "the server that took over did not stop PostgreSQL"

        # A postmaster.pid naming a process that is no PostgreSQL (the server died with the
        # machine, and the pid went to someone else) is no obstacle.
        (pgdata / "postmaster.pid").write_text(f"{os.getpid()}\n{pgdata}\n")
        server = ServerProcess(env, log).start()
        try:
            postgres = _postmaster(pgdata)
            assert postgres is not None and postgres.pid != os.getpid()
        finally:
            server.stop()
        assert _gone(postgres)
    finally:  # whatever failed, no PostgreSQL is left behind
        leftover = _postmaster(pgdata)
        if leftover is not None:
            leftover.send_signal(signal.SIGINT)
