"""`make bench`: Tessera under load, against a FastAPI reference and a bare-Starlette floor.

Starts each server as its own process on 127.0.0.1 with production settings against a throwaway
PostgreSQL database (the local server, else the embedded one) and Redis when it answers, seeds an
organization with 10,000 users, and drives every scenario with wrk from another process for a
bounded time. Prints a table (req/s, p50, p99, errors, server CPU, peak RSS) and writes it to
bench/results/<date>.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.services import (  # noqa: E402
    ThrowawayDatabase,
    free_port,
    redis_url,
    wait_for_http,
)

PASSWORD = "Bench-Password-42!"
API_KEY = "sk_live_" + "b" * 43
USERS = 10_000


@dataclass
class Row:
    server: str
    operation: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_pct: float
    rss_mb: float


# --- servers -----------------------------------------------------------------------------


class Server:
    def __init__(self, name: str, argv: list[str], env: dict, port: int, log: Path) -> None:
        self.name, self.argv, self.env, self.port, self.log = name, argv, env, port, log
        self.url = f"http://127.0.0.1:{port}"

    def __enter__(self) -> Server:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=out, cwd=ROOT)
        wait_for_http(self.url + "/health", timeout=60)
        self.ps = psutil.Process(self.proc.pid)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def cpu_seconds(self) -> float:
        procs = [self.ps, *self.ps.children(recursive=True)]
        return sum(p.cpu_times().user + p.cpu_times().system for p in procs)

    def peak_rss_mb(self) -> float:
        peak = 0
        for proc in [self.ps, *self.ps.children(recursive=True)]:
            with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
        return peak / 1024


def uvicorn(app: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--log-level",
        "warning",
        "--no-access-log",
        "--port",
    ]


# --- load --------------------------------------------------------------------------------

LUA_POST = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = {body}
"""

LUA_REFRESH = """
local tokens, i, id = {{}}, 0, 0
local counter = 0
function setup(thread) thread:set("id", counter); counter = counter + 1 end
function init(args)
  local n = 0
  for line in io.lines("{path}") do
    n = n + 1
    if n % {threads} == id then tokens[#tokens + 1] = line end
  end
end
function request()
  i = i + 1
  local t = tokens[(i - 1) % #tokens + 1]
  return wrk.format("POST", "/v1/auth/refresh", {{["Content-Type"] = "application/json"}},
    '{{"refresh_token":"' .. t .. '"}}')
end
"""


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(
    server: Server,
    path: str,
    args: argparse.Namespace,
    headers=(),
    lua: str | None = None,
    workdir: Path | None = None,
) -> Row:
    cmd = [
        "wrk",
        f"-t{args.threads}",
        f"-c{args.connections}",
        f"-d{args.duration}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    for header in headers:
        cmd += ["-H", header]
    if lua:
        script = (workdir or Path(tempfile.gettempdir())) / f"wrk-{secrets.token_hex(4)}.lua"
        script.write_text(lua)
        cmd += ["-s", str(script)]
    cpu_before = server.cpu_seconds()
    started = time.monotonic()
    out = subprocess.run(
        [*cmd, server.url + path], capture_output=True, text=True, check=True
    ).stdout
    wall = time.monotonic() - started
    cpu = (server.cpu_seconds() - cpu_before) / wall * 100
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return Row(
        server.name,
        "",
        rps,
        _ms(*p50.groups()),
        _ms(*p99.groups()),
        errors,
        cpu,
        server.peak_rss_mb(),
    )


# --- data --------------------------------------------------------------------------------


def seed(database_url: str, workdir: Path, sessions: int) -> dict:
    """An organization with USERS members, projects and an API key; refresh tokens to spend."""
    from argon2 import PasswordHasher

    from tessera import tokens
    from tessera.ids import new_id

    password_hash = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1).hash(PASSWORD)
    now = dt.datetime.now(dt.UTC)
    org_id, owner_id = new_id("org"), new_id("usr")
    user_ids = [owner_id] + [new_id("usr") for _ in range(USERS - 1)]
    prefs = json.dumps({"theme": "system"})
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO organizations (id, name, require_mfa, created_at, updated_at) "
            "VALUES (%s, 'Bench Org', false, %s, %s)",
            (org_id, now, now),
        )
        with cur.copy(
            "COPY users (id, email, display_name, password_hash, status, email_verified, "
            "org_id, preferences, created_at, updated_at) FROM STDIN"
        ) as copy:
            for n, uid in enumerate(user_ids):
                copy.write_row(
                    (
                        uid,
                        f"user{n}@bench.example.com",
                        f"User {n}",
                        password_hash,
                        "active",
                        True,
                        org_id,
                        prefs,
                        now,
                        now,
                    )
                )
        with cur.copy("COPY memberships (org_id, user_id, created_at) FROM STDIN") as copy:
            for uid in user_ids:
                copy.write_row((org_id, uid, now))
        with cur.copy(
            "COPY role_grants (id, org_id, user_id, role_id, created_at) FROM STDIN"
        ) as copy:
            for uid in user_ids:
                role = "rol_owner" if uid == owner_id else "rol_viewer"
                copy.write_row((new_id("grt"), org_id, uid, role, now))
        with cur.copy(
            "COPY projects (id, org_id, owner_id, title, status, created_at, updated_at) FROM STDIN"
        ) as copy:
            for n in range(1000):
                copy.write_row(
                    (new_id("prj"), org_id, owner_id, f"Project {n}", "active", now, now)
                )
        cur.execute(
            "INSERT INTO api_keys (id, org_id, name, environment, prefix, key_hash, scopes, "
            "allowed_ips, created_at) VALUES (%s, %s, 'bench', 'live', %s, %s, %s, '{}', %s)",
            (new_id("key"), org_id, API_KEY[:12], tokens.digest(API_KEY), ["users:read"], now),
        )
        # Sessions with one unused refresh token each, for the refresh scenario.
        refresh_tokens = [tokens.opaque("rt") for _ in range(sessions)]
        expires = now + dt.timedelta(days=30)
        session_ids = [new_id("ses") for _ in range(sessions)]
        with cur.copy(
            "COPY sessions (id, user_id, org_id, created_at, last_seen_at, expires_at) FROM STDIN"
        ) as copy:
            for sid in session_ids:
                copy.write_row((sid, owner_id, org_id, now, now, expires))
        with cur.copy(
            "COPY refresh_tokens (id, session_id, token_hash, created_at, expires_at) FROM STDIN"
        ) as copy:
            for sid, token in zip(session_ids, refresh_tokens, strict=True):
                copy.write_row((new_id("rft"), sid, tokens.digest(token), now, expires))
        conn.commit()
    tokens_file = workdir / "refresh_tokens.txt"
    tokens_file.write_text("\n".join(refresh_tokens) + "\n")
    return {
        "owner_email": "user0@bench.example.com",
        "user_id": user_ids[1234],
        "tokens_file": tokens_file,
    }


def _argon2_verifications(seconds: float) -> int:
    from argon2 import PasswordHasher

    hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
    stored, count, deadline = hasher.hash(PASSWORD), 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        hasher.verify(stored, PASSWORD)
        count += 1
    return count


def argon2_ceiling(seconds: float = 3.0) -> float:
    """argon2id verifications per second on every core: the ceiling for password logins."""
    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(cores) as pool:
        counts = list(pool.map(_argon2_verifications, [seconds] * cores))
    return sum(counts) / seconds


# --- the run -----------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install wrk` (Debian)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    database = ThrowawayDatabase(work)
    database_url = database.create()
    keys = work / "keys"
    keys.mkdir()
    from tessera.tokens import generate_pem

    (keys / "bench.pem").write_bytes(generate_pem())
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url() or "",
        "TESSERA_ENV": "production",
        "TESSERA_SIGNING_KEYS_DIR": str(keys),
        "TESSERA_SECRET_KEY": secrets.token_urlsafe(48),
        "TESSERA_DATA_DIR": str(work / "data"),
        "TESSERA_LOG_LEVEL": "WARNING",
        "TESSERA_RATE_LIMIT_TIERS": '{"free": 30, "bench": 100000000}',
        "TESSERA_RATE_LIMIT_DEFAULT_TIER": "bench",
        "TESSERA_RATE_LIMIT_LOGIN": "100000000",
        "TESSERA_RATE_LIMIT_REGISTER": "100000000",
        "TESSERA_RATE_LIMIT_ANONYMOUS": "100000000",
    }
    rows: list[Row] = []
    try:
        subprocess.run(
            [sys.executable, "-m", "tessera.cli", "migrate"],
            env=env,
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        data = seed(database_url, work, sessions=args.duration * 4000)
        rows += bench_tessera(args, env, data, work, validate=False)
        rows += bench_tessera(args, env, data, work, validate=True)
        rows += bench_reference(args, env, data, work)
        ceiling = argon2_ceiling()
    finally:
        database.drop()
        shutil.rmtree(work, ignore_errors=True)
    report = render(rows, ceiling, args)
    print(report)
    out = ROOT / "bench" / "results" / f"{dt.date.today().isoformat()}.md"
    out.write_text(report)
    print(f"written to {out.relative_to(ROOT)}")
    return 0


def _login(url: str, email: str) -> str:
    response = httpx.post(url + "/v1/auth/login", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    return response.json()["data"]["access_token"]


def bench_tessera(args, env, data, work: Path, *, validate: bool) -> list[Row]:
    port = free_port()
    name = "tessera+respval" if validate else "tessera"
    server_env = {**env, "TESSERA_VALIDATE_RESPONSES": "true" if validate else "false"}
    argv = [
        sys.executable,
        "-m",
        "tessera.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    rows = []
    with Server(name, argv, server_env, port, work / f"{name}.log") as server:
        token = _login(server.url, data["owner_email"])
        bearer = f"Authorization: Bearer {token}"
        project = LUA_POST.format(body=json.dumps(json.dumps({"title": "Bench project"})))
        scenarios = [
            ("GET /v1/users/me (JWT)", "/v1/users/me", [bearer], None),
            ("POST /v1/projects", "/v1/projects", [bearer], project),
        ]
        if not validate:
            scenarios = [
                ("GET /health", "/health", [], None),
                *scenarios,
                (
                    "GET /v1/users/{id} (API key)",
                    f"/v1/users/{data['user_id']}",
                    [f"X-API-Key: {API_KEY}"],
                    None,
                ),
                ("GET /v1/users?limit=20", "/v1/users?limit=20", [bearer], None),
                (
                    "POST /v1/auth/login",
                    "/v1/auth/login",
                    [],
                    LUA_POST.format(
                        body=json.dumps(
                            json.dumps({"email": data["owner_email"], "password": PASSWORD})
                        )
                    ),
                ),
                (
                    "POST /v1/auth/refresh",
                    "/v1/auth/refresh",
                    [],
                    LUA_REFRESH.format(path=data["tokens_file"], threads=args.threads),
                ),
            ]
        for label, path, headers, lua in scenarios:
            row = run_wrk(server, path, args, headers, lua, work)
            row.operation = label
            rows.append(row)
    return rows


def bench_reference(args, env, data, work: Path) -> list[Row]:
    rows = []
    port = free_port()
    argv = [*uvicorn("bench.reference_fastapi:app"), str(port)]
    with Server("fastapi-reference", argv, env, port, work / "reference.log") as server:
        # The reference shares Tessera's tables and keys; sign in through a Tessera-issued token.
        token_port = free_port()
        tessera_argv = [
            sys.executable,
            "-m",
            "tessera.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(token_port),
        ]
        with Server("token", tessera_argv, env, token_port, work / "token.log") as issuer:
            token = _login(issuer.url, data["owner_email"])
        bearer = f"Authorization: Bearer {token}"
        project = LUA_POST.format(body=json.dumps(json.dumps({"title": "Bench project"})))
        for label, path, lua in [
            ("GET /v1/users/me (JWT)", "/v1/users/me", None),
            ("POST /v1/projects", "/v1/projects", project),
        ]:
            row = run_wrk(server, path, args, [bearer], lua, work)
            row.operation = label
            rows.append(row)
    port = free_port()
    with Server(
        "starlette-floor",
        [*uvicorn("bench.starlette_floor:app"), str(port)],
        env,
        port,
        work / "floor.log",
    ) as server:
        row = run_wrk(server, "/health", args, [], None, work)
        row.operation = "GET /health"
        rows.append(row)
    return rows


def render(rows: list[Row], ceiling: float, args) -> str:
    lines = [
        f"# Benchmark {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s against one uvicorn worker "
        f"on 127.0.0.1; {os.cpu_count()} cores; production settings; {USERS} users seeded.",
        "",
        "| server | operation | req/s | p50 ms | p99 ms | errors | server CPU % | peak RSS MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.server} | {r.operation} | {r.rps:,.0f} | {r.p50_ms:.2f} | "
            f"{r.p99_ms:.2f} | {r.errors} | {r.cpu_pct:.0f} | {r.rss_mb:.0f} |"
        )
    by = {(r.server, r.operation): r.rps for r in rows}
    lines += ["", "| ratio | value |", "|---|---:|"]
    for op in ("GET /v1/users/me (JWT)", "POST /v1/projects"):
        ref = by.get(("fastapi-reference", op))
        for server in ("tessera", "tessera+respval"):
            if ref and (server, op) in by:
                lines.append(f"| {server} ÷ FastAPI, {op} | {by[(server, op)] / ref:.2f}× |")
    floor = by.get(("starlette-floor", "GET /health"))
    if floor and ("tessera", "GET /health") in by:
        lines.append(
            f"| tessera ÷ bare Starlette, GET /health | {by[('tessera', 'GET /health')] / floor:.2f}× |"
        )
    login = by.get(("tessera", "POST /v1/auth/login"))
    lines.append(
        f"| argon2id verification ceiling ({os.cpu_count()} cores), per second | {ceiling:,.0f} |"
    )
    if login:
        lines.append(f"| login ÷ argon2id ceiling | {login / ceiling:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
