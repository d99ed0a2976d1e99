"""Events reach webhook receivers from real `tessera` processes: with jobs inside the server (what
`make run` gives), and over Redis through an outage of Redis and a restart of the worker."""

from __future__ import annotations

import email
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import psycopg
import pytest

from tessera.core import webhook_signing
from tests.support.factories import PASSWORD, unique_email
from tests.support.receiver import Receiver
from tests.support.services import ServerProcess, redis_url


def wait_until(predicate, limit_s: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what} not met within {limit_s}s")


def owner(base_url: str) -> tuple[str, dict[str, str]]:
    """Register a user with an organization and sign in: (org id, auth headers)."""
    email = unique_email("delivery")
    with httpx.Client(base_url=base_url, timeout=15) as http:
        body = {"email": email, "password": PASSWORD, "display_name": "D", "organization_name": "D"}
        registered = http.post("/v1/auth/register", json=body)
        assert registered.status_code == 201, registered.text
        tokens = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert tokens.status_code == 200, tokens.text
    org_id = registered.json()["data"]["organization"]["id"]
    return org_id, {"Authorization": f"Bearer {tokens.json()['data']['access_token']}"}


def sign_in(base_url: str, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=base_url, timeout=15) as http:
        email = http.get("/v1/users/me", headers=headers).json()["data"]["email"]
        answer = http.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text


def unpublished(database_url: str, org_id: str) -> int:
    with psycopg.connect(database_url.replace("+psycopg", "")) as conn:
        row = conn.execute(
            "SELECT count(*) FROM events WHERE org_id = %s AND published_at IS NULL", (org_id,)
        ).fetchone()
    return row[0]


def test_make_run_setup_delivers_a_signed_user_created(test_env, tmp_path):
    """No REDIS_URL: the server relays and delivers in-process. Register a webhook, create a user,
    and the receiver gets a `user.created` signed with the endpoint's secret. The relay's poll is
    set far beyond the wait: the commit's NOTIFY has to wake it."""
    assert not test_env["REDIS_URL"]
    env = {**test_env, "TESSERA_OUTBOX_POLL_SECONDS": "600"}
    server = ServerProcess(env, tmp_path / "server.log").start()
    try:
        _, headers = owner(server.base_url)
        with Receiver() as receiver, httpx.Client(base_url=server.base_url, timeout=15) as http:
            hook = http.post(
                "/v1/webhooks",
                headers=headers,
                json={"url": receiver.url, "event_types": ["user.created"]},
            )
            assert hook.status_code == 201, hook.text
            secret = hook.json()["data"]["secret"]
            user = http.post(
                "/v1/users",
                headers=headers,
                json={"email": unique_email("created"), "display_name": "New"},
            )
            assert user.status_code == 201, user.text
            wait_until(lambda: receiver.received, what="user.created delivery")
    finally:
        log = server.stop()
    request_headers, body = receiver.received[0]
    assert webhook_signing.verify(body, request_headers["tessera-signature"], secret), log[-2000:]
    event = orjson.loads(body)
    assert event["type"] == "user.created"
    assert event["data"]["object"] == {"type": "user", "id": user.json()["data"]["id"]}
    assert request_headers["tessera-event-id"] == event["id"]


def test_events_survive_redis_and_worker_outages_and_arrive_once(test_env, tmp_path):
    redis = redis_url()
    if redis is None:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (CI has it)")
    database_url = test_env["DATABASE_URL"]
    # 1. Redis unreachable: changes commit, their events wait in the outbox.
    down = ServerProcess(
        {**test_env, "REDIS_URL": "redis://127.0.0.1:1/0"}, tmp_path / "api-down.log"
    ).start()
    receiver = Receiver(statuses=[500, 500, 500]).__enter__()
    try:
        org_id, headers = owner(down.base_url)
        with httpx.Client(base_url=down.base_url, timeout=15) as http:
            hook = http.post(
                "/v1/webhooks",
                headers=headers,
                json={"url": receiver.url, "event_types": ["user.login"]},
            )
        assert hook.status_code == 201, hook.text
        secret, hook_id = hook.json()["data"]["secret"], hook.json()["data"]["id"]
        for _ in range(3):
            sign_in(down.base_url, headers)
        time.sleep(1.0)  # several relay passes, each failing to reach the queue
        assert unpublished(database_url, org_id) >= 3
        down.stop()

        # 2. Redis back, no worker yet: the relay queues everything, nothing is delivered.
        env = {**test_env, "REDIS_URL": redis}
        api = ServerProcess(env, tmp_path / "api.log").start()
        try:
            for _ in range(3):
                sign_in(api.base_url, headers)
            wait_until(lambda: unpublished(database_url, org_id) == 0, what="outbox drained")
            time.sleep(0.5)
            assert receiver.received == []

            # 3. A worker starts, fails a few deliveries, and is restarted mid-way.
            worker = ServerProcess(env, tmp_path / "worker1.log", "worker", "--threads", "2")
            worker.start(None)
            wait_until(lambda: receiver.answered, what="first delivery attempt")
            worker.stop()
            worker = ServerProcess(env, tmp_path / "worker2.log", "worker", "--threads", "2")
            worker.start(None)
            try:
                wait_until(
                    lambda: receiver.answered.count(200) >= 6, limit_s=30, what="six deliveries"
                )
                time.sleep(1.0)  # a duplicate would arrive about now
            finally:
                worker.stop()
            with httpx.Client(base_url=api.base_url, timeout=15) as http:
                log = http.get(f"/v1/webhooks/{hook_id}/deliveries", headers=headers).json()
        finally:
            api.stop()
    finally:
        receiver.__exit__(None, None, None)

    accepted = [
        r for r, status in zip(receiver.received, receiver.answered, strict=True) if status == 200
    ]
    assert all(webhook_signing.verify(b, h["tessera-signature"], secret) for h, b in accepted)
    per_delivery = Counter(h["tessera-delivery-id"] for h, _ in accepted)
    per_event = Counter(h["tessera-event-id"] for h, _ in accepted)
    assert len(per_event) == 6 and set(per_event.values()) == {1}
    assert len(per_delivery) == 6 and set(per_delivery.values()) == {1}
    assert receiver.answered.count(500) == 3  # the failed attempts were retried
    assert sorted(d["status"] for d in log["data"]) == ["succeeded"] * 6
    assert sum(d["attempts"] for d in log["data"]) == 9


def mails_to(data_dir: str, address: str) -> list[str]:
    """Subjects of the messages the development mail backend wrote for `address`."""
    found = []
    for path in sorted((Path(data_dir) / "mail").glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes())
        if message["To"] == address:
            found.append(str(message["Subject"]))
    return found


def test_requested_jobs_are_accepted_while_redis_is_down_and_run_once_it_is_back(
    test_env, tmp_path
):
    """Webhook test and redelivery, an audit export and account mail are queued through the
    outbox: with Redis unreachable the API still answers 202, and once a server can reach Redis
    every job runs, each delivery exactly once."""
    redis = redis_url()
    if redis is None:
        pytest.skip("Redis is not reachable on 127.0.0.1:6379 (CI has it)")
    down = ServerProcess(
        {**test_env, "REDIS_URL": "redis://127.0.0.1:1/0"}, tmp_path / "api-down.log"
    ).start()
    receiver = Receiver().__enter__()

    def tests() -> list[dict[str, str]]:
        return [h for h, _ in receiver.received if h["tessera-event-type"] == "webhook.test"]

    try:
        _, headers = owner(down.base_url)
        with httpx.Client(base_url=down.base_url, headers=headers, timeout=15) as http:
            address = http.get("/v1/users/me").json()["data"]["email"]
            new_address = unique_email("moved")
            hook = http.post("/v1/webhooks", json={"url": receiver.url, "event_types": []})
            assert hook.status_code == 201, hook.text
            hook_id = hook.json()["data"]["id"]
            test = http.post(f"/v1/webhooks/{hook_id}/test")
            assert test.status_code == 202, test.text
            first = test.json()["data"]["id"]
            again = http.post(f"/v1/webhooks/{hook_id}/deliveries/{first}/redeliver")
            assert again.status_code == 202, again.text
            export = http.post("/v1/audit/exports", json={"format": "jsonl"})
            assert export.status_code == 202, export.text
            job_url = export.headers["location"]
            answers = [
                http.post("/v1/auth/password/forgot", json={"email": address}),
                http.post("/v1/users/me/email/verify"),
                http.put(
                    "/v1/users/me/email", json={"new_email": new_address, "password": PASSWORD}
                ),
            ]
            assert [a.status_code for a in answers] == [202] * 3, [a.text for a in answers]
            time.sleep(1.0)  # relay passes, each failing to reach the queue
            assert http.get(job_url).json()["data"]["status"] == "queued"
            waiting = http.get(f"/v1/webhooks/{hook_id}/deliveries").json()["data"]
            assert {d["status"] for d in waiting if d["event_type"] == "webhook.test"} == {
                "pending"
            }
        assert receiver.received == []
        down.stop()

        env = {**test_env, "REDIS_URL": redis}
        api = ServerProcess(env, tmp_path / "api.log").start()
        worker = ServerProcess(env, tmp_path / "worker.log", "worker", "--threads", "2")
        worker.start(None)
        try:
            with httpx.Client(base_url=api.base_url, headers=headers, timeout=15) as http:
                wait_until(
                    lambda: http.get(job_url).json()["data"]["status"] == "succeeded",
                    what="audit export",
                )
                wait_until(lambda: len(tests()) >= 2, what="test delivery and redelivery")
                wait_until(lambda: len(mails_to(test_env["TESSERA_DATA_DIR"], address)) >= 3)
                wait_until(lambda: mails_to(test_env["TESSERA_DATA_DIR"], new_address))
                time.sleep(1.0)  # a duplicate would arrive about now
        finally:
            worker.stop()
            api.stop()
    finally:
        receiver.__exit__(None, None, None)

    assert Counter(h["tessera-delivery-id"] for h in tests()) == {
        first: 1,
        again.json()["data"]["id"]: 1,
    }
    assert len({h["tessera-event-id"] for h in tests()}) == 1
    assert sorted(mails_to(test_env["TESSERA_DATA_DIR"], address)) == [
        "Reset your Tessera password",
        "Verify your email address",
        "Your Tessera email address is being changed",
    ]
    assert mails_to(test_env["TESSERA_DATA_DIR"], new_address) == ["Confirm your new email address"]
