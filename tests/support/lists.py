"""Assertions every list endpoint's tests share."""

from __future__ import annotations

import httpx


async def assert_cursor_keeps_its_sort(
    client: httpx.AsyncClient, path: str, headers: dict[str, str], *, other_sort: str
) -> None:
    """A cursor names the sort order it came from: under another `sort` it is refused (422)
    rather than silently starting a different walk. `path` must list at least two rows."""
    first = (await client.get(path, headers=headers, params={"limit": 1})).json()
    assert first["next_cursor"], first
    response = await client.get(
        path,
        headers=headers,
        params={"limit": 1, "sort": other_sort, "cursor": first["next_cursor"]},
    )
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["error"]["details"]] == ["cursor"]
