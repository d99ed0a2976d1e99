"""Rate limits through HTTP: headers, 429 envelope, per-IP sign-in limits, Redis and fail-open."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import redis.asyncio as aioredis

from tessera.core import ratelimit
from tessera.core.settings import get_settings
from tests.support.factories import signed_in, unique_email
from tests.support.services import redis_url


@pytest.fixture(params=["memory", "redis"])
def store(request, monkeypatch, test_env):
    """Each test runs against the in-process limiter and against the real Redis."""
    if request.param == "redis":
        url = redis_url()
        if url is None:
            pytest.skip("Redis is not reachable on 127.0.0.1:6379 (CI has it)")
        chosen = ratelimit.RedisStore(url)
    else:
        chosen = ratelimit.MemoryStore()
    monkeypatch.setattr(ratelimit, "_limiter", ratelimit.Limiter(chosen))
    return chosen


def other_ip_client(app, ip: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=(ip, 4000)), base_url="http://testserver"
    )


async def test_responses_carry_rate_limit_headers(client, store, monkeypatch):
    monkeypatch.setattr(get_settings(), "rate_limit_default_tier", "free")
    account = await signed_in(client)
    first = await client.get("/v1/users/me", headers=account.headers)
    second = await client.get("/v1/users/me", headers=account.headers)
    assert first.headers["x-ratelimit-limit"] == "30"  # free tier, read multiplier 1.0
    assert (
        int(second.headers["x-ratelimit-remaining"])
        == int(first.headers["x-ratelimit-remaining"]) - 1
    )
    assert int(first.headers["x-ratelimit-reset"]) > 1_700_000_000


async def test_write_operations_get_the_write_multiplier(client, store, monkeypatch):
    monkeypatch.setattr(get_settings(), "rate_limit_default_tier", "pro")
    account = await signed_in(client)
    response = await client.post("/v1/auth/logout", headers=account.headers)
    assert response.headers["x-ratelimit-limit"] == "60"  # 120 x 0.5


async def test_exhausting_the_limit_answers_429_with_retry_after(app, store, monkeypatch):
    monkeypatch.setattr(get_settings(), "rate_limit_anonymous_per_ip", 3)
    async with other_ip_client(app, "192.0.2.10") as http:
        body = {"password": "Whatever-Pass-1!"}
        answers = [await http.post("/v1/auth/password/validate", json=body) for _ in range(4)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    refused = answers[-1]
    assert refused.json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert refused.json()["error"]["request_id"] == refused.headers["x-request-id"]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining"] == "0"


async def test_login_is_limited_per_ip_not_globally(app, store, monkeypatch):
    monkeypatch.setattr(get_settings(), "rate_limit_login_per_ip", 2)
    body = {"email": unique_email(), "password": "Wrong-Pass-123!"}
    async with other_ip_client(app, "192.0.2.20") as a, other_ip_client(app, "192.0.2.21") as b:
        statuses = [(await a.post("/v1/auth/login", json=body)).status_code for _ in range(3)]
        other = await b.post("/v1/auth/login", json=body)
    assert statuses == [401, 401, 429]
    assert other.status_code == 401


async def test_redis_outage_fails_open(client, monkeypatch):
    monkeypatch.setattr(
        ratelimit, "_limiter", ratelimit.Limiter(ratelimit.RedisStore("redis://127.0.0.1:1/0"))
    )
    before = ratelimit.BACKEND_ERRORS._value.get()
    response = await client.post("/v1/auth/password/validate", json={"password": "x"})
    assert response.status_code == 200
    assert "x-ratelimit-limit" not in response.headers
    assert ratelimit.BACKEND_ERRORS._value.get() == before + 1


async def test_register_is_limited_per_ip(app, store, monkeypatch):
    monkeypatch.setattr(get_settings(), "rate_limit_register_per_ip", 3)
    async with other_ip_client(app, "192.0.2.30") as a, other_ip_client(app, "192.0.2.31") as b:
        statuses = [
            (await a.post("/v1/auth/register", json={"email": "bad"})).status_code for _ in range(4)
        ]
        other = await b.post("/v1/auth/register", json={"email": "bad"})
    assert statuses == [422, 422, 422, 429]  # even refused sign-ups count
    assert other.status_code == 422


@pytest.fixture
def redis_store(test_env):
    url = redis_url()
    if url is None:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (CI has it)")
    return ratelimit.RedisStore(url)


@pytest.fixture
def evalsha_calls(monkeypatch):
    """The number of keys of every EVALSHA this process sends."""
    calls: list[int] = []
    original = aioredis.Redis.evalsha

    def counting(self, sha, numkeys, *keys_and_args):
        calls.append(numkeys)
        return original(self, sha, numkeys, *keys_and_args)

    monkeypatch.setattr(aioredis.Redis, "evalsha", counting)
    return calls


async def test_concurrent_hits_on_one_key_are_counted_one_by_one(redis_store):
    key = f"concurrent:{uuid.uuid4().hex}"
    decisions = await asyncio.gather(*(redis_store.hit(key, 5, 60_000) for _ in range(20)))
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == 5
    assert sorted(d.remaining for d in allowed) == [0, 1, 2, 3, 4]
    assert all(d.retry_after >= 1 and d.remaining == 0 for d in decisions if not d.allowed)


async def test_concurrent_hits_share_round_trips(redis_store, evalsha_calls):
    prefix = uuid.uuid4().hex
    decisions = await asyncio.gather(
        *(redis_store.hit(f"{prefix}:{i}", 5, 60_000) for i in range(300))
    )
    assert all(d.allowed and d.remaining == 4 for d in decisions)
    assert sum(evalsha_calls) == 300
    assert 2 <= len(evalsha_calls) < 300
    assert max(evalsha_calls) <= ratelimit.MAX_BATCH


async def test_a_cancelled_hit_leaves_the_others_served(redis_store):
    prefix = uuid.uuid4().hex
    for ticks in range(1, 5):  # cancelled before its batch is sent, then while it is in flight
        tasks = [asyncio.create_task(redis_store.hit(f"{prefix}:{i}", 5, 60_000)) for i in range(8)]
        for _ in range(ticks):
            await asyncio.sleep(0)
        tasks[0].cancel()
        done = await asyncio.wait_for(asyncio.gather(*tasks[1:]), timeout=5)
        assert all(d.allowed for d in done)
    assert (await redis_store.hit(f"{prefix}:last", 5, 60_000)).allowed


async def test_a_redis_outage_fails_every_waiting_hit_open(test_env):
    limiter = ratelimit.Limiter(ratelimit.RedisStore("redis://127.0.0.1:1/0"))
    before = ratelimit.BACKEND_ERRORS._value.get()
    decisions = await asyncio.gather(*(limiter.hit(f"down:{i}", 5) for i in range(10)))
    assert decisions == [None] * 10
    assert ratelimit.BACKEND_ERRORS._value.get() == before + 10


async def test_error_answers_carry_the_allowance_too(client, store, monkeypatch):
    owner = await signed_in(client)
    missing = await client.get("/v1/projects/prj_01JD3ZK8Q6V4W2X7Y9A1B3C5D7", headers=owner.headers)
    invalid = await client.post("/v1/projects", headers=owner.headers, json={"title": 5})
    unauthenticated = await client.get("/v1/users/me", headers={"Authorization": "Bearer nope"})
    for response, status in ((missing, 404), (invalid, 422), (unauthenticated, 401)):
        assert response.status_code == status, response.text
        for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
            assert response.headers[name].isdigit(), (status, name)


async def test_refused_credentials_count_against_the_address(app, store, monkeypatch):
    monkeypatch.setattr(get_settings(), "rate_limit_anonymous_per_ip", 3)
    async with other_ip_client(app, "192.0.2.11") as http:
        statuses = [
            (await http.get("/v1/users/me", headers={"Authorization": f"Bearer t{n}"})).status_code
            for n in range(5)
        ]
    assert statuses[:3] == [401, 401, 401] and statuses[3:] == [429, 429], statuses
