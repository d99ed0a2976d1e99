"""Run a dramatiq Worker in this process: the `tessera worker` command, or the server's own
consumer when there is no Redis."""

from __future__ import annotations

import logging
import signal
import threading

from dramatiq import Worker

from workers.broker import broker

log = logging.getLogger("tessera.worker")


def start(threads: int = 2) -> Worker:
    worker = Worker(broker, worker_threads=threads)
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
