"""Two API processes and one worker against one PostgreSQL and Redis, behind a proxy: state that
must be shared is shared."""

from __future__ import annotations

import secrets
import time

import httpx
import pytest

from tests.support.factories import PASSWORD, unique_email
from tests.support.proxy import RoundRobinProxy
from tests.support.receiver import Receiver
from tests.support.services import ServerProcess, redis_url


@pytest.fixture(scope="module")
def cluster(test_env, tmp_path_factory):
    redis = redis_url()
    if redis is None:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (CI has it)")
    logs = tmp_path_factory.mktemp("cluster")
    env = {**test_env, "REDIS_URL": redis, "TESSERA_RATE_LIMIT_ANONYMOUS": "6"}
    worker = ServerProcess(env, logs / "worker.log", "worker", "--threads", "2").start(None)
    apis = []
    try:
        apis = [ServerProcess(env, logs / f"api{i}.log").start() for i in range(2)]
        with RoundRobinProxy([("127.0.0.1", api.port) for api in apis]) as proxy:
            yield proxy, apis
    finally:
        for api in apis:
            api.stop()
        worker.stop()


def fresh(url: str) -> httpx.Client:
    """A new connection, so the proxy hands it to the next instance."""
    return httpx.Client(base_url=url, timeout=10)


def sign_up(url: str) -> tuple[str, str]:
    email = unique_email("cluster")
    with fresh(url) as http:
        body = {"email": email, "password": PASSWORD, "display_name": "C", "organization_name": "C"}
        assert http.post("/v1/auth/register", json=body).status_code == 201
        tokens = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).json()
    return email, tokens["data"]["access_token"]


def test_a_session_revoked_on_one_instance_is_rejected_by_the_other(cluster):
    proxy, apis = cluster
    _, token = sign_up(proxy.url)
    headers = {"Authorization": f"Bearer {token}"}
    a, b = (f"http://127.0.0.1:{api.port}" for api in apis)
    with fresh(b) as http:
        assert http.get("/v1/users/me", headers=headers).status_code == 200  # cached as active on B
    with fresh(a) as http:
        assert http.post("/v1/auth/logout", headers=headers).status_code == 204
    deadline = time.monotonic() + 5  # the per-instance cache holds answers for 2 s
    status = 200
    while time.monotonic() < deadline and status == 200:
        with fresh(b) as http:
            status = http.get("/v1/users/me", headers=headers).status_code
        time.sleep(0.2)
    assert status == 401


def test_rate_limits_are_shared_across_instances(cluster):
    proxy, _ = cluster
    # The proxy is trusted for X-Forwarded-For (127.0.0.1): a client address of our own gives
    # this test a bucket no other request has touched.
    client_ip = f"198.51.100.{secrets.randbelow(250) + 1}"
    statuses = []
    for _ in range(8):
        with fresh(proxy.url) as http:
            response = http.post(
                "/v1/auth/password/validate",
                json={"password": "x"},
                headers={"X-Forwarded-For": client_ip},
            )
            statuses.append(response.status_code)
    # 6 per minute per client IP, counted in Redis whichever instance answers.
    assert statuses[:6] == [200] * 6
    assert statuses[6:] == [429, 429]


def test_each_event_is_delivered_once(cluster):
    proxy, _ = cluster
    email, token = sign_up(proxy.url)
    headers = {"Authorization": f"Bearer {token}"}
    with Receiver() as receiver:
        with fresh(proxy.url) as http:
            created = http.post(
                "/v1/webhooks",
                headers=headers,
                json={"url": receiver.url, "event_types": ["user.login"]},
            )
            assert created.status_code == 201
        for _ in range(4):  # sign-ins land on both instances; both run outbox relays
            with fresh(proxy.url) as http:
                assert (
                    http.post(
                        "/v1/auth/login", json={"email": email, "password": PASSWORD}
                    ).status_code
                    == 200
                )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(receiver.received) < 4:
            time.sleep(0.1)
        time.sleep(1.0)  # a duplicate would arrive about now
    ids = [headers_["tessera-event-id"] for headers_, _ in receiver.received]
    assert len(ids) == 4 and len(set(ids)) == 4
