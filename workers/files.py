"""Removing the bytes of deleted files. The job is queued by the `files` table's delete trigger
(migration 0012) in the transaction that deleted the row, so it runs only once that committed;
deleting bytes that are already gone succeeds, so a retried job is harmless."""

from __future__ import annotations

import dramatiq

from models.files import storage
from tessera.core import metrics

# Storage outages are retried for about a day (backoff doubling up to an hour).
_RETRIES = {"max_retries": 30, "min_backoff": 1_000, "max_backoff": 3_600_000}


@dramatiq.actor(queue_name="files", **_RETRIES)
async def delete_file_bytes(storage_key: str) -> None:
    await storage.get_storage().delete(storage_key)
    metrics.JOBS.labels("delete_file_bytes", "succeeded").inc()
