"""Run a dramatiq Worker in this process: the `tessera worker` command, or the server's own
consumer when there is no Redis. Every such worker also runs the periodic retention purges
(`workers.maintenance`) on its event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading

from dramatiq import Worker
from dramatiq.asyncio import get_event_loop_thread

from workers import maintenance
from workers.broker import broker

log = logging.getLogger("tessera.worker")


class _Worker(Worker):
    """A Worker that starts the maintenance loop on the event loop its async actors share, and
    cancels it (waiting for a purge in progress to roll back) before it shuts that loop down."""

    _maintenance: asyncio.Task | None = None

    def start(self) -> None:
        super().start()
        loop_thread = get_event_loop_thread()
        if loop_thread is None:  # no AsyncIO middleware: nothing async can run here
            log.warning("no worker event loop; retention purges are not scheduled")
            return

        async def schedule() -> asyncio.Task:
            return asyncio.create_task(maintenance.run_forever(), name="maintenance")

        self._loop = loop_thread.loop
        self._maintenance = asyncio.run_coroutine_threadsafe(schedule(), self._loop).result(5)

    def stop(self, timeout: int = 600000) -> None:
        task = self._maintenance
        if task is not None:

            async def cancel() -> None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(cancel(), self._loop).result(10)
        super().stop(timeout)


def start(threads: int = 2) -> Worker:
    # An idle consumer polls Redis with a backoff capped at worker_timeout; dramatiq's 1 s default
    # added up to a second to every webhook after a quiet spell. 100 ms costs ~10 fetches/s.
    worker = _Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    log.info(
        "worker started with %d threads on queues %s", threads, sorted(broker.get_declared_queues())
    )
    return worker


def run_forever(threads: int) -> None:
    """Consume until SIGINT/SIGTERM, then finish in-flight jobs and exit."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    worker = start(threads)
    stop.wait()
    log.info("worker stopping")
    worker.stop()
