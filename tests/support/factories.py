"""Small helpers that create what tests need through the API itself."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

PASSWORD = "Correct-Horse-9-Battery"


def unique_email(tag: str = "user") -> str:
    return f"{tag}-{uuid.uuid4().hex[:10]}@example.com"


@dataclass
class Account:
    user: dict
    organization: dict | None
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register(
    client: httpx.AsyncClient,
    *,
    org: bool = True,
    email: str | None = None,
    password: str = PASSWORD,
) -> dict:
    body = {"email": email or unique_email(), "password": password, "display_name": "Test User"}
    if org:
        body["organization_name"] = f"Org {uuid.uuid4().hex[:6]}"
    response = await client.post("/v1/auth/register", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict:
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["data"]


async def signed_in(client: httpx.AsyncClient, *, org: bool = True) -> Account:
    """A fresh user (owner of a fresh organization, by default), signed in."""
    created = await register(client, org=org)
    tokens = await login(client, created["user"]["email"])
    return Account(
        user=tokens["user"],
        organization=created.get("organization"),
        email=created["user"]["email"],
        password=PASSWORD,
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
    )


async def new_member(client: httpx.AsyncClient, owner: Account, *, role: str) -> str:
    """Registers a user without an organization and adds them to `owner`'s; returns the email."""
    email = (await register(client, org=False))["user"]["email"]
    added = await client.post(
        f"/v1/organizations/{owner.organization['id']}/members",
        json={"email": email, "role": role},
        headers=owner.headers,
    )
    assert added.status_code == 201, added.text
    return email
