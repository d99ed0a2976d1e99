"""`make bench`: Tessera under load, against a FastAPI reference and a bare-Starlette floor.

Starts each server as its own process on 127.0.0.1 with production settings against a throwaway
PostgreSQL database (the local server, else the embedded one) and Redis when it answers, seeds an
organization with 10,000 users, and drives every scenario with wrk from another process for a
bounded time. Tessera runs every scenario `--repeats` times in one process (memory must not grow
between repeats); then the two operations the reference implements run `--repeats` times on
Tessera and the reference side by side (the ratios), and the floor once. Prints the tables (req/s,
p50, p99, errors, server CPU per request, RSS), the ratios and the targets, and writes them to
bench/results/<date>.md. Any non-2xx answer is an error: the run is flagged and exits 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import httpx
from load import (
    LUA_LOGIN,
    LUA_REFRESH,
    ROOT,
    Row,
    Scenario,
    Server,
    run_paced,
    run_wrk,
    settle,
    tessera_serve,
    uvicorn,
)
from seed import API_KEY, PASSWORD, USERS, Seeded, argon2_ceiling, seed

from tests.support.services import ThrowawayDatabase, redis_url

ME, PROJECTS, HEALTH = "GET /v1/users/me (JWT)", "POST /v1/projects", "GET /health"
LOGIN, REFRESH = "POST /v1/auth/login", "POST /v1/auth/refresh"
# Performance targets (same run, same machine). Read latency is judged at half the saturating
# rate (`load.run_paced`); at saturation it is the queue's length, which the table also shows.
PACED_SHARE = 0.5
READ_P99_MS, LOGIN_SHARE, REFRESH_RPS, RSS_MB, RSS_GROWTH_MB = 25.0, 0.85, 800.0, 200.0, 10.0


def scenarios(data: Seeded, bearer: str, repeat: int, threads: int) -> list[Scenario]:
    auth = (f"Authorization: Bearer {bearer}",)
    return [
        Scenario(HEALTH, "GET", "/health"),
        Scenario(ME, "GET", "/v1/users/me", auth),
        Scenario(PROJECTS, "POST", "/v1/projects", auth, {"title": "Bench project"}, read=False),
        Scenario(
            "GET /v1/users/{id} (API key)",
            "GET",
            f"/v1/users/{data.user_id}",
            (f"X-API-Key: {API_KEY}",),
        ),
        Scenario("GET /v1/users?limit=20", "GET", "/v1/users?limit=20", auth),
        Scenario(
            LOGIN,
            "POST",
            "/v1/auth/login",
            body={"email": data.owner_email, "password": PASSWORD},
            read=False,
            lua=LUA_LOGIN.format(threads=threads, users=USERS, password=PASSWORD),
        ),
        Scenario(
            REFRESH,
            "POST",
            "/v1/auth/refresh",
            read=False,
            lua=LUA_REFRESH.format(path=data.refresh_files[repeat], threads=threads),
        ),
    ]


def login(url: str, email: str) -> str:
    response = httpx.post(url + "/v1/auth/login", json={"email": email, "password": PASSWORD})
    response.raise_for_status()
    return response.json()["data"]["access_token"]


def owner_of_new_organization(url: str, name: str) -> str:
    """An access token of the owner of a new organization of its own."""
    email = f"owner-{secrets.token_hex(4)}@bench.example.com"
    body = {"email": email, "password": PASSWORD, "display_name": name, "organization_name": name}
    httpx.post(url + "/v1/auth/register", json=body).raise_for_status()
    return login(url, email)


def bench_env(work: Path, database_url: str, namespace: str) -> dict:
    keys = work / "keys"
    keys.mkdir()
    from tessera.core.tokens import generate_pem

    (keys / "bench.pem").write_bytes(generate_pem())
    limit = "100000000"  # limits stay on (one Redis round trip per request), never reached
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url() or "",
        "TESSERA_ENV": "production",
        "TESSERA_SIGNING_KEYS_DIR": str(keys),
        "TESSERA_SECRET_KEY": secrets.token_urlsafe(48),
        "TESSERA_DATA_DIR": str(work / "data"),
        "TESSERA_LOG_LEVEL": "WARNING",
        "TESSERA_QUEUE_NAMESPACE": namespace,
        # A pool for every connection wrk keeps open (the reference shares tessera.core.db).
        "TESSERA_DB_POOL_SIZE": "32",
        # One token serves every server of the run (the reference verifies Tessera's tokens).
        "TESSERA_ACCESS_TOKEN_TTL": "7200",
        "TESSERA_RATE_LIMIT_TIERS": f'{{"free": 30, "bench": {limit}}}',
        "TESSERA_RATE_LIMIT_DEFAULT_TIER": "bench",
        "TESSERA_RATE_LIMIT_LOGIN": limit,
        "TESSERA_RATE_LIMIT_REGISTER": limit,
        "TESSERA_RATE_LIMIT_ANONYMOUS": limit,
    }


def drop_queue(namespace: str) -> None:
    """The outbox relay queued a fan-out job per event and no worker ran: remove them."""
    url = redis_url()
    if not url:
        return
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(f"{namespace}*", count=1000))
    if keys:
        client.delete(*keys)


def median_row(runs: list[Row]) -> Row:
    row = sorted(runs, key=lambda r: r.rps)[len(runs) // 2]
    row.errors = sum(r.errors for r in runs)
    row.paced_p99_ms = runs[0].paced_p99_ms
    row.note = "; ".join(r.note for r in runs if r.note)
    return row


@dataclass
class Ceiling:
    """The argon2id ceiling measured just before and just after each login run (the server idle
    meanwhile): the machine's speed drifts by tens of percent within minutes, so a ceiling
    measured at another time would say more about the drift than about the logins."""

    around_runs: list[float] = field(default_factory=list)  # per run: mean of before and after
    shares: list[float] = field(default_factory=list)  # per run: logins/s ÷ that ceiling

    def measure(self, run) -> Row:
        before = argon2_ceiling()
        row = run()
        self.around_runs.append((before + argon2_ceiling()) / 2)
        self.shares.append(row.rps / self.around_runs[-1])
        return row


def bench_tessera(
    args, env, data: Seeded, work: Path, bearer: str, ceiling: Ceiling
) -> tuple[list[Row], list[str]]:
    """Every scenario, `args.repeats` times in one server process; RSS after each repeat."""
    env = {**env, "TESSERA_VALIDATE_RESPONSES": "false"}
    runs: dict[str, list[Row]] = {}
    memory: list[str] = []
    with Server("tessera", tessera_serve(), env, work / "tessera.log") as server:
        for repeat in range(args.repeats):
            for scenario in scenarios(data, bearer, repeat, args.threads):
                if args.only and args.only not in scenario.label:
                    continue
                if scenario.label == LOGIN:
                    row = ceiling.measure(partial(run_wrk, server, scenario, args, work))
                else:
                    row = run_wrk(server, scenario, args, work)
                settle()
                if scenario.read and repeat == 0:
                    paced = run_paced(server, scenario, args, work, row.rps * PACED_SHARE)
                    row.paced_p99_ms, row.errors = paced.p99_ms, row.errors + paced.errors
                    row.note = "; ".join(n for n in (row.note, paced.note) if n)
                    settle()
                runs.setdefault(scenario.label, []).append(row)
            memory.append(
                f"repeat {repeat + 1}: RSS {server.rss_mb():.0f} MB after the run "
                f"(peak so far {server.peak_rss_mb():.0f} MB)"
            )
    return [median_row(r) for r in runs.values()], memory


PAIR_SIDES = ("Tessera", "Reference")
# Who runs beside whom for the ratios: (Tessera's server, the reference it is compared with).
PAIRS = (
    ("tessera", "fastapi-reference"),
    ("tessera+respval", "fastapi-reference"),
    ("tessera", "fastapi-lean"),
)


def bench_pair(args, env, work: Path, tokens: tuple[str, str]) -> tuple[list[Row], dict]:
    """The two operations the reference also implements, Tessera (response validation off and
    on) side by side with the reference (doing the same work, and lean: without the rate limit
    and the relay). Each pair runs at the same time, both servers freshly started, each driven by
    its own wrk with all the connections: the two share the machine's cores at the same moment,
    so the ratio of their rates is the ratio of their costs per request. Run one after the
    other, minutes apart, the two sides met different machines: this one's speed drifts by
    ±20 % over a minute or two (the same server, the same load). Each side signs in as the
    owner of an organization of its own (`tokens`: Tessera's, the reference's): writers of one
    organization take turns at its audit chain's lock, which would hold both sides to one rate
    whatever each costs. Returns the rows (medians over the repeats) and, for each (server,
    reference, operation), the median of the repeats' ratios."""

    def scenarios_as(token: str) -> list[Scenario]:
        auth = (f"Authorization: Bearer {token}",)
        pair = [
            Scenario(ME, "GET", "/v1/users/me", auth),
            Scenario(PROJECTS, "POST", "/v1/projects", auth, {"title": "Bench project"}, False),
        ]
        return [s for s in pair if not args.only or args.only in s.label]

    mine_side, their_side = scenarios_as(tokens[0]), scenarios_as(tokens[1])
    servers = {
        "tessera": (tessera_serve(), {**env, "TESSERA_VALIDATE_RESPONSES": "false"}),
        "tessera+respval": (tessera_serve(), {**env, "TESSERA_VALIDATE_RESPONSES": "true"}),
        "fastapi-reference": (uvicorn("bench.reference_fastapi:app"), env),
        "fastapi-lean": (uvicorn("bench.reference_fastapi:lean_app"), env),
    }
    runs: dict[tuple[str, str], list[Row]] = {}
    ratios: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(args.repeats if mine_side else 0):
        for mine, theirs in PAIRS:
            with (
                Server(mine, *servers[mine], work / f"{mine}.log") as a,
                Server(theirs, *servers[theirs], work / f"{theirs}.log") as b,
                ThreadPoolExecutor(2) as both,
            ):
                for scenario, same in zip(mine_side, their_side, strict=True):
                    row_a, row_b = both.map(
                        run_wrk, (a, b), (scenario, same), [args] * 2, [work] * 2
                    )
                    runs.setdefault((mine, scenario.label), []).append(row_a)
                    runs.setdefault((theirs, scenario.label), []).append(row_b)
                    ratios.setdefault((mine, theirs, scenario.label), []).append(
                        row_a.rps / row_b.rps
                    )
                    settle()
    medians = {key: statistics.median(values) for key, values in ratios.items()}
    return [median_row(r) for r in runs.values()], medians


def bench_floor(args, env, work: Path) -> list[Row]:
    if args.only and args.only not in HEALTH:
        return []
    with Server(
        "starlette-floor", uvicorn("bench.starlette_floor:app"), env, work / "floor.log"
    ) as server:
        return [run_wrk(server, Scenario(HEALTH, "GET", "/health"), args, work)]


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT MET**"


def targets(
    rows: list[Row], paired: list[Row], ratios: dict, ceiling: Ceiling, memory_mb: list[float]
) -> list[str]:
    by = {(r.server, r.operation): r for r in rows}
    lines = ["| target | measured | verdict |", "|---|---:|---|"]
    for op in (ME, PROJECTS):
        for mine, theirs in PAIRS:
            ratio = ratios.get((mine, theirs, op))
            if ratio is None:
                continue
            if theirs == "fastapi-lean":  # what the rate limit and the relay cost: no target
                lines.append(
                    f"| {mine} ÷ lean FastAPI reference (no rate limit, no relay), {op} "
                    f"| {ratio:.2f}× | |"
                )
                continue
            lines.append(
                f"| {mine} ÷ FastAPI reference, {op} ≥ 1.0× (stretch 1.5×) "
                f"| {ratio:.2f}× | {_verdict(ratio >= 1.0)} |"
            )
    floor, health = by.get(("starlette-floor", HEALTH)), by.get(("tessera", HEALTH))
    if floor and health:
        lines.append(
            f"| tessera ÷ bare Starlette, {HEALTH} (floor) | {health.rps / floor.rps:.2f}× | |"
        )
    for r in rows:
        if r.paced_p99_ms is not None:
            lines.append(
                f"| p99 < {READ_P99_MS:.0f} ms at {PACED_SHARE:.0%} of the saturating rate, "
                f"{r.server} {r.operation} | {r.paced_p99_ms:.1f} ms "
                f"| {_verdict(r.paced_p99_ms < READ_P99_MS)} |"
            )
    errors = sum(r.errors for r in rows + paired)
    lines.append(
        f"| zero errors (non-2xx, socket errors, timeouts) | {errors} | {_verdict(not errors)} |"
    )
    if ceiling.shares:
        lines.append(
            f"| argon2id verification ceiling, {os.cpu_count()} cores, around the login runs "
            f"| {', '.join(f'{c:,.0f}/s' for c in ceiling.around_runs)} | |"
        )
        share = statistics.median(ceiling.shares)
        lines.append(
            f"| login ≥ {LOGIN_SHARE:.2f} of the argon2id ceiling (median of the runs' shares) "
            f"| {share:.2f} | {_verdict(share >= LOGIN_SHARE)} |"
        )
    if refresh := by.get(("tessera", REFRESH)):
        lines.append(
            f"| refresh ≥ {REFRESH_RPS:.0f} req/s per worker | {refresh.rps:,.0f} | {_verdict(refresh.rps >= REFRESH_RPS)} |"
        )
    if memory_mb:
        last, growth = memory_mb[-1], memory_mb[-1] - memory_mb[0]
        lines.append(
            f"| RSS < {RSS_MB:.0f} MB after the run | {last:.0f} MB | {_verdict(last < RSS_MB)} |"
        )
        lines.append(
            f"| no RSS growth across repeats (≤ {RSS_GROWTH_MB:.0f} MB from repeat 1 to "
            f"{len(memory_mb)}) | {growth:+.0f} MB | {_verdict(growth <= RSS_GROWTH_MB)} |"
        )
    return lines


def _table(rows: list[Row], paced: bool) -> list[str]:
    head = "| server | operation | req/s | p50 ms | p99 ms | errors | CPU µs/req | RSS MB |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    if paced:
        head, rule = head + f" p99 ms at {PACED_SHARE:.0%} |", rule + "---:|"
    lines = [head, rule]
    for r in rows:
        flag = " ⚠" if r.errors else ""
        line = (
            f"| {r.server} | {r.operation} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {r.errors}{flag} | {r.cpu_us_per_req:,.0f} | {r.rss_mb:.0f} |"
        )
        if paced:
            line += "" if r.paced_p99_ms is None else f" {r.paced_p99_ms:.2f}"
            line += " |"
        lines.append(line)
    return lines


def render(
    rows: list[Row], paired: list[Row], ratios: dict, memory: list[str], ceiling: Ceiling, args
) -> str:
    errors = sum(r.errors for r in rows + paired)
    lines = [f"# Benchmark {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", ""]
    if errors:
        lines += [
            f"> **THIS RUN HAD {errors} ERRORS: its figures are not valid.** See the notes.",
            "",
        ]
    lines += [
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s (timeout "
        f"{2}s) against one uvicorn worker on 127.0.0.1; {os.cpu_count()} cores shared with "
        f"PostgreSQL, Redis and wrk; production settings (database pool of 32); {USERS:,} users seeded. Tessera rows "
        f"are the median of {args.repeats} repeats in one process (errors summed).",
        "",
        f"p50 and p99 are at saturation ({args.connections} connections, no pause); the last "
        f"column is p99 with the same connections pacing themselves to {PACED_SHARE:.0%} of the "
        "saturating rate (reads, first repeat).",
        "",
        *_table(rows, paced=True),
        "",
        f"Side by side with the reference (the ratios): each of {args.repeats} repeats starts "
        f"each pair of servers ({', '.join(f'{a} with {b}' for a, b in PAIRS)}) at once and "
        "drives both with their own wrk at the same time, so they share the cores at the same "
        "moment; the ratio of a pair's rates is the ratio of its costs per request. Each side "
        "writes to an organization of its own (one organization's writers queue for its audit "
        "chain, which would hold both to one rate). Rows are "
        "medians over the runs; the ratios below are medians of the runs' own ratios. "
        "fastapi-reference does the same work as Tessera (the same authentication, rate limit, "
        "queries and outbox relay); fastapi-lean leaves out the rate limit and the relay.",
        "",
        *_table(paired, paced=False),
    ]
    lines += ["", "Server memory across repeats (tessera):", ""]
    lines += [f"- {m}" for m in memory]
    mem_values = [float(m.split("RSS ")[1].split(" MB")[0]) for m in memory]
    lines += ["", *targets(rows, paired, ratios, ceiling, mem_values)]
    notes = [f"- {r.server} {r.operation}: {r.note}" for r in rows + paired if r.note]
    if notes:
        lines += ["", "Notes:", "", *notes]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="runs of every Tessera scenario")
    parser.add_argument("--only", help="run only the scenarios whose label contains this text")
    parser.add_argument("--no-write", action="store_true", help="print only; no results file")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed: `apt-get install wrk` (Debian)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="tessera-bench-"))
    database = ThrowawayDatabase(work)
    namespace = f"tessera-bench-{secrets.token_hex(4)}"
    env = bench_env(work, database.create(), namespace)
    try:
        subprocess.run(
            [sys.executable, "-m", "tessera.cli", "migrate"],
            env=env,
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        # Enough single-use refresh tokens that even 3,000 refreshes/s never reuse one.
        data = seed(
            env["DATABASE_URL"], work, repeats=args.repeats, tokens_per_repeat=args.duration * 3000
        )
        with Server("token", tessera_serve(), env, work / "token.log") as issuer:
            token = login(issuer.url, data.owner_email)
            sides = tuple(
                owner_of_new_organization(issuer.url, f"{side} side") for side in PAIR_SIDES
            )
        ceiling = Ceiling()
        rows, memory = bench_tessera(args, env, data, work, token, ceiling)
        paired, ratios = bench_pair(args, env, work, sides)
        rows += bench_floor(args, env, work)
    finally:
        try:
            database.drop()
            drop_queue(namespace)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    report = render(rows, paired, ratios, memory, ceiling, args)
    print(report)
    if not args.no_write:
        out = ROOT / "bench" / "results" / f"{dt.date.today().isoformat()}.md"
        out.write_text(report)
        print(f"written to {out.relative_to(ROOT)}")
    return 1 if any(r.errors for r in rows + paired) else 0


if __name__ == "__main__":
    sys.exit(main())
