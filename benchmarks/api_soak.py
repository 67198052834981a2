"""Soak test of the risk-score API: a steady request rate for a long time.

Serves the benchmark store (see api_store.py) with the predictor app in its own
process and sends ``GET /v1/risk/{component}`` for random components at a fixed rate
from a minimal asyncio HTTP/1.1 client in this process. An httpx client fell behind the
rate on a shared 2-core machine, its pending requests grew past 300 MB, and the run
could not finish. Requests that fail, time out or return anything but 200 count as
lost. The server's resident set size (RSS, from
/proc/PID/status) is sampled every 10 s. Prints one JSON line with the counts, the
RSS after warm-up and at the end, and the growth in percent.

    python benchmarks/api_soak.py --store PATH [--minutes 10] [--rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.api_load import TOKEN, _start  # noqa: E402
from benchmarks.api_store import component_name  # noqa: E402

WARM_UP_SECONDS = 60
SAMPLE_SECONDS = 10
CONNECTIONS = 32
TIMEOUT_SECONDS = 5.0


def rss_kib(pid: int) -> int:
    """Return the resident set size of process ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS line for process {pid}")


async def _worker(
    host: str, port: int, queue: asyncio.Queue, counts: dict[str, int], components: int
) -> None:
    """Send the queued requests over one keep-alive connection; reconnect after an error."""
    reader = writer = None
    while True:
        await queue.get()
        name = component_name(random.randrange(components))
        request = (
            f"GET /v1/risk/{name} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {TOKEN}\r\n\r\n"
        ).encode()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT_SECONDS)
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            await asyncio.wait_for(reader.readexactly(length), TIMEOUT_SECONDS)
            counts["ok" if head.startswith(b"HTTP/1.1 200 ") else "lost"] += 1
        except (OSError, asyncio.IncompleteReadError, TimeoutError, StopIteration):
            counts["lost"] += 1
            if writer is not None:
                writer.close()
            reader = writer = None
        finally:
            queue.task_done()


async def soak(url: str, pid: int, components: int, rate: float, seconds: float) -> dict:
    """Send ``rate`` requests per second for ``seconds``; return counts and RSS samples.

    A scheduler queues one request every ``1 / rate`` seconds and 32 connections send
    them, so a slow server shows as a larger ``max_backlog`` (queued, unsent requests)
    instead of a lower rate.
    """
    host, port = url.removeprefix("http://").split(":")
    counts = {"sent": 0, "ok": 0, "lost": 0, "max_backlog": 0}
    samples: list[tuple[float, int]] = []
    queue: asyncio.Queue = asyncio.Queue()
    workers = [
        asyncio.create_task(_worker(host, int(port), queue, counts, components))
        for _ in range(CONNECTIONS)
    ]
    started = time.monotonic()
    next_sample = started
    while (elapsed := time.monotonic() - started) < seconds:
        for _ in range(int(elapsed * rate) - counts["sent"]):
            queue.put_nowait(None)
            counts["sent"] += 1
        counts["max_backlog"] = max(counts["max_backlog"], queue.qsize())
        if time.monotonic() >= next_sample:
            samples.append((round(elapsed, 1), rss_kib(pid)))
            next_sample += SAMPLE_SECONDS
        await asyncio.sleep(0.005)
    await queue.join()
    for worker in workers:
        worker.cancel()
    samples.append((round(time.monotonic() - started, 1), rss_kib(pid)))
    return {**counts, "rss_kib": samples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="store from api_store.py")
    parser.add_argument("--components", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    args = parser.parse_args()

    process, url = _start("predictor", args.store)
    try:
        result = asyncio.run(soak(url, process.pid, args.components, args.rate, args.minutes * 60))
    finally:
        process.terminate()
        process.wait(timeout=30)
    after_warm_up = next(kib for seconds, kib in result["rss_kib"] if seconds >= WARM_UP_SECONDS)
    final = result["rss_kib"][-1][1]
    summary = {
        "minutes": args.minutes,
        "rate": args.rate,
        "sent": result["sent"],
        "ok": result["ok"],
        "lost": result["lost"],
        "max_backlog": result["max_backlog"],
        "rss_after_warm_up_mib": round(after_warm_up / 1024, 1),
        "rss_end_mib": round(final / 1024, 1),
        "rss_growth_percent": round(100 * (final - after_warm_up) / after_warm_up, 2),
        "rss_samples_kib": result["rss_kib"],
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
