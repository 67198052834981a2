from __future__ import annotations

import json
import logging

import pandas as pd

from predictor.config import HookConfig
from predictor.hooks import HookEvent, dispatch_hooks, level_entries
from predictor.store import RiskStore


def _event(t0, minutes, previous="high", level="critical", component="gpu-1"):
    return HookEvent(
        component=component,
        group="pool-a",
        level=level,
        previous_level=previous,
        risk=0.9,
        scored_at=t0 + pd.Timedelta(minutes=minutes),
        horizon_minutes=60,
        drivers=[{"metric": "gpu_temp_celsius", "contribution": 0.8}],
        time_to_threshold_seconds=None,
        model_version="3",
    )


def _webhook(url, **changes):
    values = {"name": "pager", "type": "webhook", "url": url, "cooldown_minutes": 60.0}
    values.update(changes)
    return HookConfig(**values)


def test_webhook_called_once_per_critical_entry(http_receiver, store, tmp_path, t0):
    hook = _webhook(http_receiver.url)
    events = [
        _event(t0, 0),  # first entry into critical: delivered
        _event(t0, 0),  # the same event again: no second call
        _event(t0, 10, previous="critical", level="high"),  # not an entry into critical
        _event(t0, 20),  # entry inside the 60 min cooldown: skipped
        _event(t0, 30, previous="critical", level="critical"),  # no level change
        _event(t0, 90),  # 90 min after the last delivery: delivered
        _event(t0, 5, component="gpu-2"),  # another component has its own cooldown
    ]

    records = dispatch_hooks(events, [hook], store, home=tmp_path)

    posted = [request["json"]["idempotency_key"] for request in http_receiver.requests]
    assert posted == [
        _event(t0, 0).idempotency_key,
        _event(t0, 5, component="gpu-2").idempotency_key,
        _event(t0, 90).idempotency_key,
    ]
    assert [(r.component, r.status) for r in records] == [
        ("gpu-1", "delivered"),
        ("gpu-2", "delivered"),
        ("gpu-1", "skipped_cooldown"),
        ("gpu-1", "delivered"),
    ]
    stored = store.hook_calls(hook="pager", component="gpu-1")
    assert stored["status"].tolist() == ["delivered", "skipped_cooldown", "delivered"]
    assert stored["scored_at"].tolist() == [
        t0,
        t0 + pd.Timedelta(minutes=20),
        t0 + pd.Timedelta(minutes=90),
    ]
    assert "within the 60 min cooldown" in stored["attempt_detail"].iloc[1]
    assert stored["payload"].iloc[0] == _event(t0, 0).to_payload()


def test_rerun_same_scoring_calls_nothing(http_receiver, store, tmp_path, t0):
    hook = _webhook(http_receiver.url)
    events = [_event(t0, 0), _event(t0, 20), _event(t0, 90)]
    dispatch_hooks(events, [hook], store, home=tmp_path)
    calls_before = len(http_receiver.requests)

    again = dispatch_hooks(events, [hook], store, home=tmp_path)
    reloaded = RiskStore(store.url)

    assert calls_before == 2
    assert again == []
    assert len(http_receiver.requests) == 2
    assert len(reloaded.hook_calls()) == 3
    reloaded.close()


def test_rerun_without_cooldown_calls_nothing(http_receiver, store, tmp_path, t0):
    # With no cooldown only the idempotency key stops a second call for the same entry.
    hook = _webhook(http_receiver.url, cooldown_minutes=0.0)
    events = [_event(t0, 0), _event(t0, 5)]

    first = dispatch_hooks(events, [hook], store, home=tmp_path)
    second = dispatch_hooks(events, [hook], store, home=tmp_path)

    assert [r.status for r in first] == ["delivered", "delivered"]
    assert second == []
    assert len(http_receiver.requests) == 2


def test_cooldown_ends_exactly_after_cooldown(http_receiver, store, tmp_path, t0):
    hook = _webhook(http_receiver.url, cooldown_minutes=30.0)

    dispatch_hooks([_event(t0, 0), _event(t0, 30)], [hook], store, home=tmp_path)

    assert len(http_receiver.requests) == 2


def test_cooldown_zero_delivers_every_entry(http_receiver, store, tmp_path, t0):
    hook = _webhook(http_receiver.url, cooldown_minutes=0.0)

    dispatch_hooks([_event(t0, 0), _event(t0, 1)], [hook], store, home=tmp_path)

    assert len(http_receiver.requests) == 2


def test_events_handled_in_scoring_order(http_receiver, store, tmp_path, t0):
    hook = _webhook(http_receiver.url)

    records = dispatch_hooks([_event(t0, 20), _event(t0, 0)], [hook], store, home=tmp_path)

    assert [r.status for r in records] == ["delivered", "skipped_cooldown"]
    assert records[0].scored_at == t0


def test_failed_webhook_stays_pending_with_retry(http_receiver, store, tmp_path, t0, caplog):
    http_receiver.status = 500
    hook = _webhook(http_receiver.url)

    with caplog.at_level(logging.INFO, logger="predictor.hooks"):
        records = dispatch_hooks([_event(t0, 0), _event(t0, 20)], [hook], store, home=tmp_path)

    stored = store.hook_calls()
    # The failed action stays queued for a retry, so it still starts the cooldown.
    assert stored["status"].tolist() == ["pending", "skipped_cooldown"]
    assert stored["attempts"].tolist() == [1, 0]
    assert stored["last_error"].iloc[0].startswith("HTTP 500")
    assert stored["next_attempt_at"].iloc[0] > stored["called_at"].iloc[0]
    assert len(http_receiver.requests) == 1
    assert [r.status for r in records] == ["pending", "skipped_cooldown"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "pager" in warnings[0].getMessage()
    assert "gpu-1" in warnings[0].getMessage()
    assert "attempt 1 of 5 failed: HTTP 500" in warnings[0].getMessage()


def test_hook_fires_only_for_its_levels(http_receiver, store, tmp_path, t0):
    hook = _webhook(http_receiver.url, on_levels=("high", "critical"))
    events = [
        _event(t0, 0, previous="normal", level="elevated"),
        _event(t0, 5, previous="elevated", level="high"),
        _event(t0, 70, previous="high", level="critical"),
    ]

    dispatch_hooks(events, [hook], store, home=tmp_path)

    levels = [request["json"]["level"] for request in http_receiver.requests]
    assert levels == ["high", "critical"]


def test_command_hook_through_dispatch(store, tmp_path, t0):
    out = tmp_path / "home" / "calls.jsonl"
    hook = HookConfig(
        name="failover",
        type="command",
        argv=("{python}", "-m", "predictor.hooks.receiver", "--out", "{home}/calls.jsonl"),
    )

    records = dispatch_hooks([_event(t0, 0)], [hook], store, home=tmp_path / "home")

    assert [r.status for r in records] == ["delivered"]
    lines = out.read_text().splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0]) == _event(t0, 0).to_payload()
    assert store.hook_calls(hook="failover")["attempt_detail"].tolist() == ["exit code 0"]


def test_missing_executable_retried_later(store, tmp_path, t0):
    hook = HookConfig(name="failover", type="command", argv=(str(tmp_path / "missing-tool"),))

    records = dispatch_hooks([_event(t0, 0)], [hook], store, home=tmp_path)

    assert [(r.status, r.attempts) for r in records] == [("pending", 1)]
    stored = store.hook_calls(hook="failover")
    assert stored["attempt_detail"].iloc[0].startswith("executable not found")


def test_dry_run_sends_nothing(http_receiver, store, tmp_path, t0):
    hook = _webhook(http_receiver.url)
    events = [_event(t0, 0), _event(t0, 20), _event(t0, 90)]

    dry = dispatch_hooks(events, [hook], store, home=tmp_path, dry_run=True)
    dry_again = dispatch_hooks(events, [hook], store, home=tmp_path, dry_run=True)

    assert http_receiver.requests == []
    assert [r.status for r in dry] == ["dry_run", "skipped_cooldown", "dry_run"]
    assert dry_again == []
    assert store.last_delivered_call("pager", "gpu-1") is None

    real = dispatch_hooks(events, [hook], store, home=tmp_path)

    assert [r.status for r in real] == ["delivered", "skipped_cooldown", "delivered"]
    assert len(http_receiver.requests) == 2


def test_level_entries_feed_dispatch(http_receiver, store, tmp_path, t0):
    times = [t0 + pd.Timedelta(minutes=5 * i) for i in range(6)]
    levels = ["normal", "high", "critical", "critical", "high", "critical"]
    scores = pd.DataFrame(
        {
            "component": "gpu-1",
            "scored_at": times,
            "risk": [0.1, 0.75, 0.9, 0.92, 0.8, 0.95],
            "level": levels,
            "previous_level": [None, *levels[:-1]],
            "model_version": "3",
        }
    )
    hook = _webhook(http_receiver.url)

    records = dispatch_hooks(
        level_entries(scores, horizon_minutes=60), [hook], store, home=tmp_path
    )

    assert [r.status for r in records] == ["delivered", "skipped_cooldown"]
    assert len(http_receiver.requests) == 1
    assert http_receiver.requests[0]["json"]["scored_at"] == times[2].isoformat()


def test_unknown_hook_type_dead_lettered(store, tmp_path, t0):
    hook = HookConfig(name="pager", type="pigeon")

    records = dispatch_hooks([_event(t0, 0)], [hook], store, home=tmp_path)

    assert [r.status for r in records] == ["dead"]
    assert "type 'pigeon' has no sender" in records[0].last_error
