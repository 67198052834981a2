"""Webhook signatures: sent by the worker, checked with the recipe in docs/hooks.md."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest

from predictor.config import HookConfig
from predictor.hooks import HookEvent, send_webhook, sign, verify_signature

DOC = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"


def _documented_verify():
    """Return ``verify_signature`` as defined by the Python block of the Signing section."""
    section = DOC.read_text().split("## Signing", 1)[1].split("\n## ", 1)[0]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace["verify_signature"]


def _payload():
    event = HookEvent(
        component="gpu-1",
        group="pool-a",
        level="critical",
        previous_level="high",
        risk=0.9,
        scored_at=pd.Timestamp("2024-05-01 12:00", tz="UTC"),
        horizon_minutes=60,
    )
    return event.to_payload()


def _hook(url, **changes):
    values = {"name": "pager", "type": "webhook", "url": url, "secret_env": "PAGER_SECRET"}
    values.update(changes)
    return HookConfig(**values)


@pytest.fixture
def raw_receiver(http_receiver, monkeypatch):
    """The recording receiver, also keeping each request's raw body."""
    bodies = []
    original = http_receiver.RequestHandlerClass.do_POST

    def record(handler):
        length = int(handler.headers.get("Content-Length", "0"))
        body = handler.rfile.read(length)
        bodies.append(body)
        handler.rfile = io.BytesIO(body)
        original(handler)

    monkeypatch.setattr(http_receiver.RequestHandlerClass, "do_POST", record)
    http_receiver.bodies = bodies
    return http_receiver


def test_signed_webhook_verifies_with_documented_recipe(raw_receiver, monkeypatch):
    monkeypatch.setenv("PAGER_SECRET", "s3cret")

    result = send_webhook(_hook(raw_receiver.url), _payload())

    assert result.ok, result.detail
    headers = raw_receiver.requests[0]["headers"]
    body = raw_receiver.bodies[0]
    documented = _documented_verify()
    args = (headers["X-Predictor-Timestamp"], body, headers["X-Predictor-Signature"])
    assert documented("s3cret", *args)
    assert verify_signature("s3cret", *args)
    assert headers["Idempotency-Key"] == _payload()["idempotency_key"]


def test_tampered_body_or_wrong_secret_fails(raw_receiver, monkeypatch):
    monkeypatch.setenv("PAGER_SECRET", "s3cret")
    send_webhook(_hook(raw_receiver.url), _payload())
    headers = raw_receiver.requests[0]["headers"]
    body = raw_receiver.bodies[0]
    timestamp, signature = headers["X-Predictor-Timestamp"], headers["X-Predictor-Signature"]
    documented = _documented_verify()

    assert not documented("s3cret", timestamp, body.replace(b"0.9", b"0.1"), signature)
    assert not documented("other", timestamp, body, signature)
    assert not verify_signature("s3cret", timestamp, body.replace(b"0.9", b"0.1"), signature)
    assert not verify_signature("other", timestamp, body, signature)


def test_stale_timestamp_rejected():
    body = b'{"a":1}'
    signature = sign("s3cret", 1_000_000, body)

    assert verify_signature("s3cret", "1000000", body, signature, now=1_000_100)
    assert not verify_signature("s3cret", "1000000", body, signature, now=1_000_301)
    assert not verify_signature("s3cret", "not-a-time", body, signature, now=1_000_000)


def test_missing_secret_sends_nothing(http_receiver, monkeypatch):
    monkeypatch.delenv("PAGER_SECRET", raising=False)

    result = send_webhook(_hook(http_receiver.url), _payload())

    assert not result.ok
    assert not result.retryable
    assert "'PAGER_SECRET'" in result.detail
    assert http_receiver.requests == []


def test_unsigned_hook_sends_no_signature(http_receiver):
    result = send_webhook(_hook(http_receiver.url, secret_env=None), _payload())

    assert result.ok
    assert "X-Predictor-Signature" not in http_receiver.requests[0]["headers"]
