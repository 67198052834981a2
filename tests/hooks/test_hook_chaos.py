"""Fault injection: a receiver on 127.0.0.1 fails in scripted ways while the worker delivers.

Afterwards every action is delivered or dead-lettered as the policy says, none is lost,
and every repeat of an action carried the same idempotency key and a valid signature.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from predictor.config import HookConfig
from predictor.hooks import HookEvent, decide_actions, deliver_pending, verify_signature
from predictor.store import RiskStore

pytestmark = pytest.mark.chaos

T0 = pd.Timestamp("2024-05-01 12:00", tz="UTC")
SECRET = "chaos-secret"
TIMEOUT = 0.5

# What the receiver does on each request for a component, in order; "ok" once used up.
SCRIPTS = {
    "gpu-500": [("status", 500), ("status", 500)],
    "gpu-429": [("retry_after", 1)],
    "gpu-timeout": [("hang", 3 * TIMEOUT)],
    "gpu-slow": [("slow", TIMEOUT / 3)],
    "gpu-drop": [("drop", None)],
    "gpu-dead": [("status", 503)] * 10,
    "gpu-ok": [],
}
MAX_ATTEMPTS = 4


class _ChaosHandler(BaseHTTPRequestHandler):
    server: _ChaosServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        payload = json.loads(body)
        component = payload["component"]
        with self.server.lock:
            script = self.server.scripts.setdefault(component, list(SCRIPTS[component]))
            step = script.pop(0) if script else ("ok", None)
            self.server.requests.append(
                {
                    "component": component,
                    "key": self.headers["Idempotency-Key"],
                    "payload_key": payload["idempotency_key"],
                    "signed": verify_signature(
                        SECRET,
                        self.headers["X-Predictor-Timestamp"],
                        body,
                        self.headers["X-Predictor-Signature"],
                    ),
                    "step": step[0],
                    "at": time.monotonic(),
                }
            )
        kind, value = step
        if kind == "drop":
            # Processed, then the connection closes without a response.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind in ("hang", "slow"):
            time.sleep(value)
        status = {"status": value, "retry_after": 429}.get(kind, 200)
        self.send_response(status)
        if kind == "retry_after":
            self.send_header("Retry-After", str(value))
        self.send_header("Content-Length", "2")
        self.end_headers()
        try:
            self.wfile.write(b"ok")
        except OSError:
            # The worker timed out and closed the connection first.
            return

    def log_message(self, format: str, *args: object) -> None:
        return


class _ChaosServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ChaosHandler)
        self.lock = threading.Lock()
        self.scripts: dict[str, list] = {}
        self.requests: list[dict] = []


@pytest.fixture
def chaos_receiver():
    server = _ChaosServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _hook(name, url, **changes):
    values = {
        "name": name,
        "type": "webhook",
        "url": url,
        "cooldown_minutes": 0.0,
        "timeout_seconds": TIMEOUT,
        "secret_env": "PREDICTOR_CHAOS_SECRET",
        "max_attempts": MAX_ATTEMPTS,
        "backoff_seconds": 0.05,
        "backoff_max_seconds": 0.2,
        "breaker_failures": 100,
    }
    values.update(changes)
    return HookConfig(**values)


def _event(component):
    return HookEvent(
        component=component,
        group="pool-a",
        level="critical",
        previous_level="high",
        risk=0.9,
        scored_at=T0,
        horizon_minutes=60,
        model_version="3",
    )


def test_every_action_delivered_or_dead_and_repeats_keep_their_key(
    outbox_url, chaos_receiver, monkeypatch
):
    monkeypatch.setenv("PREDICTOR_CHAOS_SECRET", SECRET)
    host, port = chaos_receiver.server_address[:2]
    flaky = _hook("flaky", f"http://{host}:{port}/hook")
    refused = _hook("refused", f"http://127.0.0.1:{_closed_port()}/hook", max_attempts=3)
    store = RiskStore(outbox_url)
    events = [_event(component) for component in SCRIPTS]
    actions = decide_actions(events, [flaky], store) + decide_actions(
        [_event("gpu-refused")], [refused], store
    )
    store.enqueue_actions(actions)

    deadline = time.monotonic() + 60
    while not store.hook_calls(status="pending").empty and time.monotonic() < deadline:
        deliver_pending(store, [flaky, refused], worker_id="chaos")
        time.sleep(0.05)
    stored = store.hook_calls().set_index("component")
    store.close()

    status = stored["status"].to_dict()
    assert status == {
        "gpu-500": "delivered",
        "gpu-429": "delivered",
        "gpu-timeout": "delivered",
        "gpu-slow": "delivered",
        "gpu-drop": "delivered",
        "gpu-dead": "dead",
        "gpu-ok": "delivered",
        "gpu-refused": "dead",
    }
    attempts = stored["attempts"].to_dict()
    assert attempts == {
        "gpu-500": 3,
        "gpu-429": 2,
        "gpu-timeout": 2,
        "gpu-slow": 1,
        "gpu-drop": 2,
        "gpu-dead": MAX_ATTEMPTS,
        "gpu-ok": 1,
        "gpu-refused": 3,
    }
    assert stored.loc["gpu-refused", "last_error"].startswith("connection failed")
    assert "HTTP 503" in stored.loc["gpu-dead", "last_error"]

    requests = chaos_receiver.requests
    by_component: dict[str, list[dict]] = {}
    for request in requests:
        by_component.setdefault(request["component"], []).append(request)
    # The receiver saw each attempt that reached it; the refused hook never reached it.
    assert {c: len(r) for c, r in by_component.items()} == {
        c: n for c, n in attempts.items() if c != "gpu-refused"
    }
    for component, seen in by_component.items():
        expected_key = stored.loc[component, "idempotency_key"]
        assert {request["key"] for request in seen} == {expected_key}
        assert {request["payload_key"] for request in seen} == {expected_key}
    assert all(request["signed"] for request in requests)
    # The drop and the timeout reached the receiver twice: a repeat with the same key.
    processed_twice = sorted(c for c, seen in by_component.items() if len(seen) > 1)
    assert "gpu-drop" in processed_twice
    assert "gpu-timeout" in processed_twice
    # Retry-After: 1 was honoured even though the backoff is at most 0.2 s.
    first, second = by_component["gpu-429"]
    assert second["at"] - first["at"] >= 0.95
