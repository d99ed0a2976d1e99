"""Files: upload and download of one large file through the API, the server's memory and the
throughput on loopback.

Starts `tessera serve` with production settings against a throwaway database, uploads a file of
`--mb` MiB (random bytes behind a PNG signature, read from disk and streamed by the client) and
downloads it again, `--repeats` times, while a thread samples the server's RSS. The target: RSS
growth under 20 MB (the bytes are never held whole) and at least 100 MB/s each way.

    .venv/bin/python bench/files.py [--mb 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from load import ROOT, Server, tessera_serve
from run import bench_env, drop_queue

from tests.support.services import ThrowawayDatabase

PASSWORD = "Bench-Password-42!"
RSS_GROWTH_MB, MB_PER_S = 20.0, 100.0


class PeakRss:
    """The server's highest RSS while the block runs, sampled every 20 ms."""

    def __init__(self, server: Server) -> None:
        self.server, self.peak, self._stop = server, 0.0, threading.Event()

    def __enter__(self) -> PeakRss:
        self.peak = self.server.rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.server.rss_mb())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _signed_in(http: httpx.Client) -> dict[str, str]:
    body = {
        "email": "files@bench.example.com",
        "password": PASSWORD,
        "display_name": "F",
        "organization_name": "F",
    }
    http.post("/v1/auth/register", json=body).raise_for_status()
    tokens = http.post("/v1/auth/login", json={"email": body["email"], "password": PASSWORD})
    return {"Authorization": f"Bearer {tokens.raise_for_status().json()['data']['access_token']}"}


def _write_file(path: Path, mib: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        head = b"\x89PNG\r\n\x1a\n"
        out.write(head)
        digest.update(head)
        for _ in range(mib):
            block = os.urandom(1024 * 1024)
            out.write(block)
            digest.update(block)
    return digest.hexdigest()


def measure(server: Server, source: Path, sha256: str, repeats: int) -> list[dict]:
    rows = []
    size_mb = source.stat().st_size / 1e6
    with httpx.Client(base_url=server.url, timeout=120) as http:
        headers = _signed_in(http)
        for _ in range(repeats):
            baseline = server.rss_mb()
            with PeakRss(server) as up, source.open("rb") as fh:
                started = time.perf_counter()
                answer = http.post(
                    "/v1/files", files={"file": ("big.png", fh, "image/png")}, headers=headers
                )
                upload_s = time.perf_counter() - started
            answer.raise_for_status()
            file = answer.json()["data"]
            assert file["sha256"] == sha256, "the stored bytes differ from the uploaded ones"
            digest = hashlib.sha256()
            with PeakRss(server) as down:
                started = time.perf_counter()
                url = f"/v1/files/{file['id']}/content"
                with http.stream("GET", url, headers=headers) as response:
                    response.raise_for_status()
                    for chunk in response.iter_bytes(1024 * 1024):
                        digest.update(chunk)
                download_s = time.perf_counter() - started
            assert digest.hexdigest() == sha256, "the downloaded bytes differ"
            http.delete(f"/v1/files/{file['id']}", headers=headers).raise_for_status()
            rows.append(
                {
                    "upload MB/s": size_mb / upload_s,
                    "download MB/s": size_mb / download_s,
                    "RSS growth MB (upload)": up.peak - baseline,
                    "RSS growth MB (download)": down.peak - baseline,
                }
            )
    return rows


def render(rows: list[dict], mib: int) -> tuple[str, bool]:
    lines = [f"## Files: {mib} MiB upload and download, {len(rows)} runs", ""]
    lines += ["| run | " + " | ".join(rows[0]) + " |", "|---" * (len(rows[0]) + 1) + "|"]
    for i, row in enumerate(rows, 1):
        lines.append(f"| {i} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |")
    worst_growth = max(
        max(r["RSS growth MB (upload)"], r["RSS growth MB (download)"]) for r in rows
    )
    slowest = min(min(r["upload MB/s"], r["download MB/s"]) for r in rows)
    met = worst_growth < RSS_GROWTH_MB and slowest >= MB_PER_S
    lines += [
        "",
        f"- RSS growth {worst_growth:.1f} MB (target < {RSS_GROWTH_MB:.0f}): "
        + ("met" if worst_growth < RSS_GROWTH_MB else "MISSED"),
        f"- slowest direction {slowest:.0f} MB/s (target >= {MB_PER_S:.0f}): "
        + ("met" if slowest >= MB_PER_S else "MISSED"),
    ]
    return "\n".join(lines), met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=50, help="file size in MiB")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tessera-bench-files-"))
    database = ThrowawayDatabase(work)
    namespace = f"tessera-bench-{secrets.token_hex(4)}"
    env = bench_env(work, database.create(), namespace)
    env["TESSERA_VALIDATE_RESPONSES"] = "false"
    try:
        subprocess.run(
            [sys.executable, "-m", "tessera.cli", "migrate"],
            env=env,
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        source = work / "big.png"
        sha256 = _write_file(source, args.mb)
        with Server("tessera", tessera_serve(), env, work / "tessera.log") as server:
            rows = measure(server, source, sha256, args.repeats)
    finally:
        try:
            database.drop()
            drop_queue(namespace)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    report, met = render(rows, args.mb)
    print(report)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
