"""Servers under test as child processes, and wrk driving one scenario against one of them."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.services import free_port, wait_for_http  # noqa: E402

WRK_TIMEOUT_S = 2  # a request slower than this counts as an error (timeout)


@dataclass(frozen=True)
class Scenario:
    label: str
    method: str
    path: str
    headers: tuple[str, ...] = ()
    body: dict | None = None
    read: bool = True
    lua: str | None = None  # a wrk script of its own (refresh tokens are single-use)


@dataclass
class Row:
    server: str
    operation: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us_per_req: float  # server CPU time (user + system) per answered request
    rss_mb: float
    note: str = ""
    paced_p99_ms: float | None = None  # reads: p99 at half the saturating rate (`run_paced`)


class Server:
    """One server process on 127.0.0.1; its CPU time and memory are read from /proc."""

    def __init__(self, name: str, argv: list[str], env: dict, log: Path) -> None:
        self.name, self.env, self.log = name, env, log
        self.port = free_port()
        self.argv = [a.replace("{port}", str(self.port)) for a in argv]
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=out, cwd=ROOT)
        try:
            wait_for_http(self.url + "/health", timeout=120)
        except TimeoutError:
            self.__exit__()
            log = self.log.read_text()[-3000:]
            raise TimeoutError(f"{self.name} did not start; its log:\n{log}") from None
        self.ps = psutil.Process(self.proc.pid)
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def _procs(self) -> list[psutil.Process]:
        return [self.ps, *self.ps.children(recursive=True)]

    def cpu_seconds(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self._procs())

    def _status_kib(self, field: str) -> int:
        total = 0
        for proc in self._procs():
            with contextlib.suppress(OSError), open(f"/proc/{proc.pid}/status") as fh:
                total += next((int(ln.split()[1]) for ln in fh if ln.startswith(field)), 0)
        return total

    def rss_mb(self) -> float:
        return self._status_kib("VmRSS:") / 1024

    def peak_rss_mb(self) -> float:
        return self._status_kib("VmHWM:") / 1024


def uvicorn(app: str) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}",
        "--log-level", "warning", "--no-access-log", "--loop", "uvloop", "--http", "httptools",
    ]  # fmt: skip


def tessera_serve() -> list[str]:
    return [sys.executable, "-m", "tessera.cli", "serve", "--host", "127.0.0.1", "--port", "{port}"]


# A refresh token is spent by its first use: each wrk thread walks its own share of the file
# and reports a failing status, so errors can be told apart (401 reuse, 429, 5xx).
LUA_REFRESH = """
-- `id` is a global: thread:set() writes the thread's globals, a local would stay 0 in every
-- thread and all of them would send the same tokens (answered again inside the overlap window).
local tokens, i, counter, threads = {{}}, 0, 0, {{}}
id, failed_status = 0, 0
function setup(thread)
  thread:set("id", counter); counter = counter + 1; threads[#threads + 1] = thread
end
function init(args)
  local n = 0
  for line in io.lines("{path}") do
    if n % {threads} == id then tokens[#tokens + 1] = line end
    n = n + 1
  end
end
function request()
  i = i + 1
  local t = tokens[(i - 1) % #tokens + 1]
  return wrk.format("POST", "/v1/auth/refresh", {{["Content-Type"] = "application/json"}},
    '{{"refresh_token":"' .. t .. '"}}')
end
function response(status, headers, body)
  if status >= 300 then failed_status = status end
end
function done(summary, latency, requests)
  for _, thread in ipairs(threads) do
    local status = thread:get("failed_status")
    if status ~= 0 then print("failed with status " .. status) end
  end
end
"""


# Password sign-ins of many members in turn, as at the start of a working day (one account
# signing in 32 times at once would only measure the lock on its row).
LUA_LOGIN = """
local n, counter = 0, 0
id = 0  -- a global, set per thread by setup()
function setup(thread) thread:set("id", counter); counter = counter + 1 end
function request()
  n = n + 1
  local user = (n * {threads} + id) % {users}
  return wrk.format("POST", "/v1/auth/login", {{["Content-Type"] = "application/json"}},
    '{{"email":"user' .. user .. '@bench.example.com","password":"{password}"}}')
end
"""


def _lua_for(scenario: Scenario) -> str | None:
    if scenario.lua:
        return scenario.lua
    if scenario.method == "GET":
        return None
    body = json.dumps(json.dumps(scenario.body))
    return (
        f'wrk.method = "{scenario.method}"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {body}\n"
    )


def probe(server: Server, scenario: Scenario) -> str:
    """Send the scenario's request once; the answer when it is not a success, else ''."""
    if scenario.body is None and scenario.method == "POST":  # refresh: tokens are single-use
        return ""
    headers = dict(h.split(": ", 1) for h in scenario.headers)
    response = httpx.request(
        scenario.method, server.url + scenario.path, headers=headers, json=scenario.body
    )
    if response.status_code < 300:
        return ""
    return f"probe answered {response.status_code}: {response.text[:200]}"


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(server: Server, scenario: Scenario, args, workdir: Path) -> Row:
    note = probe(server, scenario)
    cmd = ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s"]
    cmd += ["--latency", "--timeout", f"{WRK_TIMEOUT_S}s"]
    for header in scenario.headers:
        cmd += ["-H", header]
    lua = _lua_for(scenario)
    if lua:
        script = workdir / f"wrk-{secrets.token_hex(4)}.lua"
        script.write_text(lua)
        cmd += ["-s", str(script)]
    cpu_before = server.cpu_seconds()
    out = subprocess.run(
        [*cmd, server.url + scenario.path],
        capture_output=True,
        text=True,
        check=True,
        timeout=args.duration + 60,
    ).stdout
    cpu = server.cpu_seconds() - cpu_before
    total = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    if errors and not note:
        failed = re.search(r"failed with status (\d+)", out)
        note = f"{errors} of {total} failed" + (
            f", e.g. status {failed.group(1)}" if failed else ""
        )
        note += f" ({sock.group(0)})" if sock else ""
    return Row(
        server=server.name,
        operation=scenario.label,
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        p50_ms=_ms(*re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups()),
        p99_ms=_ms(*re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()),
        errors=errors,
        cpu_us_per_req=cpu / max(1, total - errors) * 1e6,
        rss_mb=server.rss_mb(),
        note=note,
    )


def run_paced(server: Server, scenario: Scenario, args, workdir: Path, rps: float) -> Row:
    """The same connections offering about `rps` requests per second in all: each pauses between
    its requests for a random time (uniform, mean connections / rps, with wrk's `delay()`). A
    fixed pause would keep the connections in lockstep, arriving as bursts of all of them at
    once. A closed loop at saturation only measures queueing (Little's law: mean latency =
    connections / throughput, so 32 connections at 600 req/s wait 53 ms on average however fast
    each request is); this is the latency a client sees at a load the server keeps up with."""
    mean_ms = args.connections / rps * 1000
    pause = f"function delay() return math.random(0, {round(2 * mean_ms)}) end"
    return run_wrk(server, replace(scenario, lua=pause), args, workdir)


def settle(seconds: float = 1.0) -> None:
    """Let the previous scenario's connections close before the next one starts."""
    time.sleep(seconds)
