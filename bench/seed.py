"""Data for `make bench`: an organization with 10,000 members, projects, an API key and refresh
tokens to spend, written with COPY so seeding takes seconds; and the argon2id ceiling."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tessera.core import tokens
from tessera.core.ids import new_id

PASSWORD = "Bench-Password-42!"
API_KEY = "sk_live_" + "b" * 43
USERS = 10_000
# OWASP's argon2id parameters, the same as the server's defaults (tessera.core.settings).
ARGON2 = {"time_cost": 2, "memory_cost": 19 * 1024, "parallelism": 1}


@dataclass(frozen=True)
class Seeded:
    owner_email: str
    user_id: str  # another member, read by id with the API key
    refresh_files: list[Path]  # one file of unused refresh tokens per repeat


def _copy(cur, statement: str, rows) -> None:
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def seed(database_url: str, workdir: Path, *, repeats: int, tokens_per_repeat: int) -> Seeded:
    from argon2 import PasswordHasher

    password_hash = PasswordHasher(**ARGON2).hash(PASSWORD)
    now = dt.datetime.now(dt.UTC)
    org_id, owner_id = new_id("org"), new_id("usr")
    user_ids = [owner_id] + [new_id("usr") for _ in range(USERS - 1)]
    member = (True, org_id, json.dumps({"theme": "system"}), now, now)  # verified, org, prefs, …
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn, conn.cursor() as cur:
        cur.execute(
            "INSERT INTO organizations (id, name, require_mfa, created_at, updated_at) "
            "VALUES (%s, 'Bench Org', false, %s, %s)",
            (org_id, now, now),
        )
        _copy(
            cur,
            "COPY users (id, email, display_name, password_hash, status, email_verified, "
            "org_id, preferences, created_at, updated_at) FROM STDIN",
            (
                (uid, f"user{n}@bench.example.com", f"User {n}", password_hash, "active", *member)
                for n, uid in enumerate(user_ids)
            ),
        )
        _copy(
            cur,
            "COPY memberships (org_id, user_id, created_at) FROM STDIN",
            ((org_id, uid, now) for uid in user_ids),
        )
        _copy(
            cur,
            "COPY role_grants (id, org_id, user_id, role_id, created_at) FROM STDIN",
            (
                (new_id("grt"), org_id, uid, "rol_owner" if uid == owner_id else "rol_viewer", now)
                for uid in user_ids
            ),
        )
        _copy(
            cur,
            "COPY projects (id, org_id, owner_id, title, status, created_at, updated_at) "
            "FROM STDIN",
            (
                (new_id("prj"), org_id, owner_id, f"Project {n}", "active", now, now)
                for n in range(1000)
            ),
        )
        cur.execute(
            "INSERT INTO api_keys (id, org_id, name, environment, prefix, key_hash, scopes, "
            "allowed_ips, created_at) VALUES (%s, %s, 'bench', 'live', %s, %s, %s, '{}', %s)",
            (new_id("key"), org_id, API_KEY[:12], tokens.digest(API_KEY), ["users:read"], now),
        )
        # One session per refresh token, each token used once: a real client's refresh pattern.
        count = repeats * tokens_per_repeat
        refresh = [tokens.opaque("rt") for _ in range(count)]
        sessions = [new_id("ses") for _ in range(count)]
        expires = now + dt.timedelta(days=30)
        _copy(
            cur,
            "COPY sessions (id, user_id, org_id, created_at, last_seen_at, expires_at) FROM STDIN",
            ((sid, owner_id, org_id, now, now, expires) for sid in sessions),
        )
        _copy(
            cur,
            "COPY refresh_tokens (id, session_id, token_hash, created_at, expires_at) FROM STDIN",
            (
                (new_id("rft"), sid, tokens.digest(token), now, expires)
                for sid, token in zip(sessions, refresh, strict=True)
            ),
        )
        # Statistics, as autovacuum gathers within a minute of a bulk load: without them the
        # planner guesses a few dozen members and picks plans no real deployment runs.
        cur.execute("ANALYZE")
        conn.commit()
    files = []
    for n in range(repeats):
        path = workdir / f"refresh_tokens_{n}.txt"
        path.write_text("\n".join(refresh[n * tokens_per_repeat : (n + 1) * tokens_per_repeat]))
        files.append(path)
    return Seeded("user0@bench.example.com", user_ids[1234], files)


def _verifications(seconds: float) -> int:
    from argon2 import PasswordHasher

    hasher = PasswordHasher(**ARGON2)
    stored, count, deadline = hasher.hash(PASSWORD), 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        hasher.verify(stored, PASSWORD)
        count += 1
    return count


def argon2_ceiling(seconds: float = 5.0) -> float:
    """argon2id verifications per second on every core, nothing else running: the most password
    logins per second this machine could answer."""
    cores = os.cpu_count() or 1
    with ProcessPoolExecutor(cores) as pool:
        counts = list(pool.map(_verifications, [seconds] * cores))
    return sum(counts) / seconds
