"""`db.fetch_one` and `db.statements`: statements sent by a pooled connection's own psycopg
connection, which must go back to the pool as the pool hands connections out (in transactions),
whatever happened."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import psycopg
import pytest
from sqlalchemy import Integer, bindparam, func, literal, select, text

from tessera.core import db

_ECHO = select(bindparam("value", type_=Integer).label("value"), literal(7).label("seven"))
_FAILING = select((bindparam("value", type_=Integer) / 0).label("never"))
_SLOW = select(func.pg_sleep(bindparam("seconds")).label("slept"))
_NOTHING = select(literal(1).label("one")).where(bindparam("value", type_=Integer) < 0)


async def _idle_connections_in_autocommit() -> list[bool]:
    """Whether each connection waiting in the pool is in autocommit mode (checked out all at
    once, so every one of them is seen)."""
    async with contextlib.AsyncExitStack() as stack:
        idle = db.engine().sync_engine.pool.checkedin()
        found = []
        for _ in range(idle):
            conn = await stack.enter_async_context(db.engine().connect())
            found.append((await conn.get_raw_connection()).driver_connection.autocommit)
        return found


async def test_fetch_one_answers_a_named_row_or_none(app):
    row = await db.fetch_one(_ECHO, {"value": 41})
    assert (row.value, row.seven) == (41, 7)  # a default parameter of the statement as well
    assert await db.fetch_one(_NOTHING, {"value": 1}) is None
    assert not any(await _idle_connections_in_autocommit())


async def test_a_failed_statement_leaves_no_autocommit_connection_in_the_pool(app):
    for _ in range(3):
        with pytest.raises(psycopg.errors.DivisionByZero):
            await db.fetch_one(_FAILING, {"value": 1})
    found = await _idle_connections_in_autocommit()
    assert found and not any(found)
    # The pool's transactions still roll back as a whole.
    with contextlib.suppress(RuntimeError):
        async with db.transaction() as session:
            await session.execute(select(literal(1)))
            raise RuntimeError
    assert (await db.fetch_one(_ECHO, {"value": 1})).value == 1


async def test_a_cancelled_statement_leaves_no_autocommit_connection_in_the_pool(app):
    task = asyncio.create_task(db.fetch_one(_SLOW, {"seconds": 5}))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(await _idle_connections_in_autocommit())
    assert (await db.fetch_one(_ECHO, {"value": 2})).value == 2


_THROTTLE = text(
    "INSERT INTO login_throttles (email, ip, failures, updated_at) "
    "VALUES (:email, '203.0.113.9', 1, now()) RETURNING email"
)
_THROTTLED = text("SELECT count(*) AS n FROM login_throttles WHERE email = :email")


async def test_statements_commit_together_or_not_at_all(app):
    kept, dropped = f"kept-{uuid.uuid4().hex}@example.com", f"gone-{uuid.uuid4().hex}@example.com"
    async with db.statements() as conn:
        assert (await conn.fetch_one(_THROTTLE, {"email": kept})).email == kept
    with pytest.raises(RuntimeError):
        async with db.statements() as conn:
            await conn.fetch_one(_THROTTLE, {"email": dropped})
            raise RuntimeError("after the write")
    assert (await db.fetch_one(_THROTTLED, {"email": kept})).n == 1
    assert (await db.fetch_one(_THROTTLED, {"email": dropped})).n == 0
    assert not any(await _idle_connections_in_autocommit())
