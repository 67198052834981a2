"""Crash test: scoring and delivery processes killed with SIGKILL at random points."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

WORKER = Path(__file__).with_name("crash_worker.py")
KILLS = 30
CYCLES = 80
COMPONENTS = 4


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server.lock:
            self.server.keys.append(json.loads(body)["idempotency_key"])
        time.sleep(self.server.rng.uniform(0.0, 0.02))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.keys: list[str] = []
        self.rng = random.Random(7)


def _expected_keys() -> set[str]:
    """Every level entry the worker's pattern produces, as idempotency keys."""
    sys.path.insert(0, str(WORKER.parent))
    try:
        import crash_worker
    finally:
        sys.path.remove(str(WORKER.parent))
    import pandas as pd

    keys = set()
    for cycle in range(CYCLES):
        scored_at = crash_worker.T0 + pd.Timedelta(minutes=5 * cycle)
        for j in range(COMPONENTS):
            level = crash_worker.level(cycle, j)
            previous = crash_worker.level(cycle - 1, j) if cycle > 0 else None
            if level != previous and level in ("high", "critical"):
                keys.add(f"gpu-{j}:{previous}->{level}:{scored_at.isoformat()}")
    return keys


def _check_integrity(path: Path) -> None:
    connection = sqlite3.connect(path)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        duplicates = connection.execute(
            "SELECT COUNT(*) FROM (SELECT hook, idempotency_key FROM hook_calls "
            "GROUP BY hook, idempotency_key HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        assert duplicates == 0
        orphans = connection.execute(
            "SELECT COUNT(*) FROM hook_calls h WHERE NOT EXISTS (SELECT 1 FROM scores s "
            "WHERE s.component = h.component AND s.scored_at = h.scored_at)"
        ).fetchone()[0]
        # An action is never stored without the score that caused it.
        assert orphans == 0
    finally:
        connection.close()


def test_sigkill_at_random_points_loses_no_decision(tmp_path):
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    path = tmp_path / "risk.db"
    host, port = server.server_address[:2]
    argv = [
        sys.executable,
        str(WORKER),
        f"sqlite:///{path}",
        f"http://{host}:{port}/hook",
        str(CYCLES),
        str(COMPONENTS),
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    rng = random.Random(20240501)
    started = time.monotonic()
    killed = 0
    try:
        trials = 0
        # A worker that finishes before its kill time counts as a trial, not a kill.
        while killed < KILLS and trials < 2 * KILLS:
            trials += 1
            with subprocess.Popen(argv, stdout=subprocess.PIPE, env=env, text=True) as process:
                assert process.stdout.readline() == "ready\n"
                time.sleep(rng.uniform(0.0, 0.4))
                if process.poll() is None:
                    process.send_signal(signal.SIGKILL)
                    killed += 1
                process.wait(timeout=30)
            _check_integrity(path)
        final = subprocess.run(argv, capture_output=True, env=env, text=True, timeout=120)
        assert final.returncode == 0, final.stderr
        _check_integrity(path)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    connection = sqlite3.connect(path)
    rows = connection.execute("SELECT idempotency_key, status FROM hook_calls").fetchall()
    connection.close()
    expected = _expected_keys()
    decided = {key for key, _ in rows}
    received = Counter(server.keys)
    lost = expected - decided
    undelivered = [key for key, status in rows if status != "delivered"]
    duplicates = sum(count - 1 for count in received.values())
    print(
        f"crash test: trials={trials} killed={killed} actions decided={len(decided)} "
        f"expected={len(expected)} delivered={len(rows) - len(undelivered)} "
        f"received={len(received)} duplicates by key={duplicates} lost={len(lost)} "
        f"in {time.monotonic() - started:.1f} s"
    )
    assert killed == KILLS
    assert lost == set()
    assert decided == expected
    assert undelivered == []
    assert set(received) == expected
