from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from predictor.store import RiskStore


class _RecordingHandler(BaseHTTPRequestHandler):
    """Store every POST on the server and respond with the server's current status."""

    server: _RecordingServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.server.requests.append({
            "path": self.path,
            "headers": dict(self.headers.items()),
            "json": json.loads(body),
        })
        self.send_response(self.server.status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: object) -> None:
        # Keep the request log out of the test output.
        return


class _RecordingServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.requests: list[dict] = []
        self.status = 200
        self.body = b"ok"

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/hook"


@pytest.fixture
def http_receiver():
    server = _RecordingServer()
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def store(tmp_path):
    store = RiskStore(f"sqlite:///{tmp_path / 'home' / 'risk.db'}")
    yield store
    store.close()


@pytest.fixture
def t0():
    return pd.Timestamp("2024-05-01 12:00", tz="UTC")
