"""A real webhook receiver on 127.0.0.1: records what arrives, answers with scripted statuses."""

from __future__ import annotations

import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.answered: list[int] = []  # the status given to each request in `received`
        self.statuses = deque(statuses or [])
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with lock:  # keeps `answered` and `received` in step across threads
                    status = owner.statuses.popleft() if owner.statuses else 200
                    owner.answered.append(status)
                    owner.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                time.sleep(delay_s)  # a slow receiver: the sender is still waiting for the answer
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
