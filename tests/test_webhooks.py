"""Events, the outbox and signed webhook delivery, end to end with a real receiver."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from models.records import outbox
from tessera.core import db, webhook_signing
from tests.support.factories import login, signed_in
from tests.support.receiver import Receiver


async def wait_for(predicate, limit_s: float = 15.0):
    deadline = asyncio.get_running_loop().time() + limit_s
    while asyncio.get_running_loop().time() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met in time")


async def create_endpoint(client, account, url: str, types=("user.login",)) -> dict:
    response = await client.post(
        "/v1/webhooks", headers=account.headers, json={"url": url, "event_types": list(types)}
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_signed_event_arrives_at_the_receiver(client):
    account = await signed_in(client)
    with Receiver() as receiver:
        endpoint = await create_endpoint(client, account, receiver.url)
        assert endpoint["secret"].startswith("whsec_")
        await login(client, account.email)  # emits user.login in the owner's organization
        await wait_for(lambda: _received(receiver))
    headers, body = receiver.received[0]
    assert webhook_signing.verify(body, headers["tessera-signature"], endpoint["secret"])
    assert not webhook_signing.verify(body, headers["tessera-signature"], "whsec_wrong")
    event = orjson.loads(body)
    assert event["type"] == "user.login" and headers["tessera-event-id"] == event["id"]
    listed = await client.get(f"/v1/events/{event['id']}", headers=account.headers)
    assert listed.status_code == 200 and listed.json()["data"] == event


async def _received(receiver):
    return bool(receiver.received)


async def test_failed_deliveries_are_retried_until_success(client):
    account = await signed_in(client)
    with Receiver(statuses=[500, 500]) as receiver:
        endpoint = await create_endpoint(client, account, receiver.url)
        await login(client, account.email)

        async def succeeded():
            page = await client.get(
                f"/v1/webhooks/{endpoint['id']}/deliveries", headers=account.headers
            )
            data = page.json()["data"]
            return data if data and data[0]["status"] == "succeeded" else None

        deliveries = await wait_for(succeeded)
    assert len(receiver.received) == 3 and receiver.answered == [500, 500, 200]
    assert deliveries[0]["attempts"] == 3 and deliveries[0]["response_status"] == 200
    for headers, body in receiver.received:  # every attempt is signed afresh
        assert webhook_signing.verify(body, headers["tessera-signature"], endpoint["secret"])
    ids = {h["tessera-event-id"] for h, _ in receiver.received}
    assert len(ids) == 1  # the same event id on every attempt, for receiver-side dedup


async def test_endpoint_is_disabled_after_repeated_final_failures(client):
    account = await signed_in(client)
    with Receiver(statuses=[500] * 40) as receiver:
        endpoint = await create_endpoint(client, account, receiver.url, types=("webhook.test",))
        for _ in range(2):
            response = await client.post(
                f"/v1/webhooks/{endpoint['id']}/test", headers=account.headers
            )
            assert response.status_code == 202

        async def disabled():
            data = (
                await client.get(f"/v1/webhooks/{endpoint['id']}", headers=account.headers)
            ).json()
            return data["data"]["disabled_at"]

        await wait_for(disabled, limit_s=30)
    events = await client.get("/v1/events?type=webhook.disabled", headers=account.headers)
    assert events.json()["total"] == 1


async def test_rotated_secret_signs_alongside_the_old_one(client):
    account = await signed_in(client)
    with Receiver() as receiver:
        endpoint = await create_endpoint(client, account, receiver.url, types=())
        rotated = await client.post(
            f"/v1/webhooks/{endpoint['id']}/rotate-secret", headers=account.headers
        )
        new_secret = rotated.json()["data"]["secret"]
        assert new_secret != endpoint["secret"]
        assert rotated.json()["data"]["secret_rotated_until"] is not None
        await client.post(f"/v1/webhooks/{endpoint['id']}/test", headers=account.headers)

        def test_events():  # not the endpoint's own creation, which may arrive before rotation
            return [r for r in receiver.received if r[0]["tessera-event-type"] == "webhook.test"]

        async def arrived():
            return test_events()

        await wait_for(arrived)
    headers, body = test_events()[0]
    assert headers["tessera-signature"].count("v1=") == 2
    assert webhook_signing.verify(body, headers["tessera-signature"], endpoint["secret"])
    assert webhook_signing.verify(body, headers["tessera-signature"], new_secret)


async def test_redeliver_sends_the_same_event_again(client):
    account = await signed_in(client)
    with Receiver() as receiver:
        endpoint = await create_endpoint(client, account, receiver.url, types=())
        test = await client.post(f"/v1/webhooks/{endpoint['id']}/test", headers=account.headers)
        again = await client.post(
            f"/v1/webhooks/{endpoint['id']}/deliveries/{test.json()['data']['id']}/redeliver",
            headers=account.headers,
        )
        assert again.status_code == 202

        def tests_received():
            return [r for r in receiver.received if r[0]["tessera-event-type"] == "webhook.test"]

        async def two():
            return len(tests_received()) >= 2

        await wait_for(two)
    first, second = tests_received()[:2]
    assert first[0]["tessera-event-id"] == second[0]["tessera-event-id"]
    assert first[0]["tessera-delivery-id"] != second[0]["tessera-delivery-id"]


async def test_a_duplicate_job_for_a_delivery_still_posts_it_once(client):
    """The relay hands a job to the queue at least once (a commit that fails after the send
    repeats it); a second job for a delivery whose attempt is still waiting for the receiver
    must not POST it again, and finds nothing to do once it succeeded."""
    account = await signed_in(client)
    with Receiver(delay_s=0.5) as receiver:
        endpoint = await create_endpoint(client, account, receiver.url, types=())
        test = await client.post(f"/v1/webhooks/{endpoint['id']}/test", headers=account.headers)
        assert test.status_code == 202, test.text
        delivery_id = test.json()["data"]["id"]
        async with db.transaction() as session:
            await outbox.enqueue(session=session, actor="deliver", args=[delivery_id])

        def requests():
            return [h for h, _ in receiver.received if h["tessera-delivery-id"] == delivery_id]

        async def delivered():
            page = await client.get(
                f"/v1/webhooks/{endpoint['id']}/deliveries", headers=account.headers
            )
            return any(
                d["id"] == delivery_id and d["status"] == "succeeded" for d in page.json()["data"]
            )

        await wait_for(delivered)
        await asyncio.sleep(1.0)  # a second request would arrive about now
    assert len(requests()) == 1


async def test_private_targets_are_refused_when_not_allowed(client, monkeypatch):
    from tessera.core.settings import get_settings

    monkeypatch.setattr(get_settings(), "webhook_allow_private_targets", False)
    account = await signed_in(client)
    for url in ("http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest"):
        response = await client.post("/v1/webhooks", headers=account.headers, json={"url": url})
        assert response.status_code == 422, url
        assert response.json()["error"]["details"][0]["code"] == "UNSAFE_URL"


async def test_other_tenants_cannot_see_endpoints_or_events(client):
    alice, mallory = await signed_in(client), await signed_in(client)
    endpoint = await create_endpoint(client, alice, "http://127.0.0.1:9/x")
    for method, path in [
        ("GET", f"/v1/webhooks/{endpoint['id']}"),
        ("PATCH", f"/v1/webhooks/{endpoint['id']}"),
        ("DELETE", f"/v1/webhooks/{endpoint['id']}"),
        ("GET", f"/v1/webhooks/{endpoint['id']}/deliveries"),
    ]:
        response = await client.request(
            method,
            path,
            headers=mallory.headers,
            json={"active": False} if method == "PATCH" else None,
        )
        assert response.status_code == 404, (method, path)
    alice_events = (await client.get("/v1/events", headers=alice.headers)).json()["data"]
    own = await client.get(f"/v1/events/{alice_events[0]['id']}", headers=alice.headers)
    assert own.status_code == 200
    other = await client.get(f"/v1/events/{alice_events[0]['id']}", headers=mallory.headers)
    assert other.status_code == 404


@pytest.mark.parametrize("field", ["url", "event_types"])
async def test_invalid_endpoint_input_is_422(client, field):
    account = await signed_in(client)
    body = (
        {"url": "ftp://example.com/x"}
        if field == "url"
        else {"url": "https://example.com/x", "event_types": ["no.such.event"]}
    )
    response = await client.post("/v1/webhooks", headers=account.headers, json=body)
    assert response.status_code == 422
    assert response.json()["error"]["details"][0]["field"].startswith(field)


async def test_put_replaces_and_patch_changes_only_what_is_sent(client):
    account = await signed_in(client)
    endpoint = await create_endpoint(client, account, "https://example.com/a")
    path = f"/v1/webhooks/{endpoint['id']}"
    patched = await client.patch(path, headers=account.headers, json={"description": "Sync"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["data"]["description"] == "Sync"
    assert patched.json()["data"]["event_types"] == ["user.login"]
    etag = patched.headers["etag"]
    replacement = {
        "url": "https://example.com/b",
        "description": "",
        "event_types": [],
        "active": False,
    }
    replaced = await client.put(
        path, headers={**account.headers, "If-Match": etag}, json=replacement
    )
    assert replaced.status_code == 200, replaced.text
    data = replaced.json()["data"]
    assert {k: data[k] for k in replacement} == replacement and "secret" not in data
    stale = await client.put(path, headers={**account.headers, "If-Match": etag}, json=replacement)
    assert stale.status_code == 412
    partial = await client.put(path, headers=account.headers, json={"url": "https://example.com/c"})
    assert partial.status_code == 422  # PUT replaces the whole endpoint


async def test_events_are_listed_by_type_and_time(client):
    from datetime import UTC, datetime

    account = await signed_in(client)  # organization.created, user.created, user.login
    everything = (await client.get("/v1/events?limit=100", headers=account.headers)).json()
    assert {"organization.created", "user.created", "user.login"} <= {
        e["type"] for e in everything["data"]
    }
    mark = datetime.now(UTC).isoformat()
    await login(client, account.email)
    logins = await client.get("/v1/events", headers=account.headers, params={"type": "user.login"})
    assert [e["type"] for e in logins.json()["data"]] == ["user.login", "user.login"]
    after = await client.get("/v1/events", headers=account.headers, params={"created_after": mark})
    before = await client.get(
        "/v1/events", headers=account.headers, params={"created_before": mark}
    )
    assert [e["type"] for e in after.json()["data"]] == ["user.login"]
    assert before.json()["total"] == everything["total"]


def test_readme_recipe_verifies_our_signatures(tmp_path):
    import runpy
    import time

    from tessera.core.settings import ROOT

    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Webhooks and their signatures")[1].split("\n## ")[0]
    recipe = tmp_path / "recipe.py"
    recipe.write_text(section.split("```python\n")[1].split("```")[0])
    verify = runpy.run_path(str(recipe))["verify"]
    payload = b'{"id": "evt_1", "type": "user.created"}'
    header = webhook_signing.sign(payload, ["whsec_new", "whsec_old"])
    assert verify(payload, header, "whsec_new") and verify(payload, header, "whsec_old")
    assert not verify(payload + b" ", header, "whsec_new")
    assert not verify(payload, header, "whsec_other")
    stale = webhook_signing.sign(payload, ["whsec_new"], timestamp=int(time.time()) - 301)
    assert not verify(payload, stale, "whsec_new")
