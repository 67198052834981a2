"""The outbox and its delivery worker on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading

import pandas as pd
import pytest
import sqlalchemy as sa

from predictor.config import HookConfig
from predictor.hooks import HookEvent, breaker_states, decide_actions, deliver_pending
from predictor.store import RiskStore

T0 = pd.Timestamp("2024-05-01 12:00", tz="UTC")


def _event(minutes, component="gpu-1", previous="high", level="critical"):
    return HookEvent(
        component=component,
        group="pool-a",
        level=level,
        previous_level=previous,
        risk=0.9,
        scored_at=T0 + pd.Timedelta(minutes=minutes),
        horizon_minutes=60,
        model_version="3",
    )


def _scores(events):
    return pd.DataFrame(
        {
            "component": [event.component for event in events],
            "scored_at": [event.scored_at for event in events],
            "risk": [event.risk for event in events],
            "level": [event.level for event in events],
            "previous_level": [event.previous_level for event in events],
            "model_version": "3",
        }
    )


def _hook(url, **changes):
    values = {
        "name": "pager",
        "type": "webhook",
        "url": url,
        "cooldown_minutes": 0.0,
        "timeout_seconds": 2.0,
        "backoff_seconds": 0.0,
        "backoff_max_seconds": 0.0,
    }
    values.update(changes)
    return HookConfig(**values)


@pytest.fixture
def outbox(outbox_url):
    store = RiskStore(outbox_url)
    yield store
    store.close()


def test_scores_and_actions_written_together(outbox, http_receiver):
    events = [_event(0, component=f"gpu-{i}") for i in range(3)]
    actions = decide_actions(events, [_hook(http_receiver.url)], outbox, now=T0)

    written = outbox.write_scores_and_actions(_scores(events), actions)
    again = outbox.write_scores_and_actions(_scores(events), actions)

    assert written == (3, 3)
    assert again == (0, 0)
    stored = outbox.hook_calls()
    assert stored["status"].tolist() == ["pending"] * 3
    assert stored["idempotency_key"].tolist() == [event.idempotency_key for event in events]
    # Nothing is sent until a worker delivers.
    assert http_receiver.requests == []


def test_failed_action_insert_rolls_back_the_scores(outbox, http_receiver):
    events = [_event(0)]
    action = decide_actions(events, [_hook(http_receiver.url)], outbox, now=T0)[0]
    broken = type(action)(**{**action.__dict__, "component": None})

    with pytest.raises(sa.exc.IntegrityError, match="component"):
        outbox.write_scores_and_actions(_scores(events), [broken])

    assert outbox.scores().empty
    assert outbox.hook_calls().empty


def test_worker_delivers_and_records_attempts(outbox, http_receiver):
    events = [_event(0, component=f"gpu-{i}") for i in range(4)]
    hook = _hook(http_receiver.url)
    outbox.write_scores_and_actions(
        _scores(events), decide_actions(events, [hook], outbox, now=T0)
    )

    report = deliver_pending(outbox, [hook], now=T0, worker_id="w1")

    assert (report.delivered, report.retried, report.dead) == (4, 0, 0)
    stored = outbox.hook_calls()
    assert stored["status"].tolist() == ["delivered"] * 4
    assert stored["attempts"].tolist() == [1] * 4
    assert stored["lease_owner"].isna().all()
    keys = [request["headers"]["Idempotency-Key"] for request in http_receiver.requests]
    assert keys == [event.idempotency_key for event in events]


def test_expired_lease_makes_action_due_again(outbox, http_receiver):
    hook = _hook(http_receiver.url)
    outbox.enqueue_actions(decide_actions([_event(0)], [hook], outbox, now=T0))
    # Worker A claims and is then killed: it never records an outcome.
    claimed = outbox.claim_hook_actions(worker_id="a", now=T0, lease_seconds=30, limit=5)
    assert [action.attempts for action in claimed] == [1]

    during = outbox.claim_hook_actions(
        worker_id="b", now=T0 + pd.Timedelta(seconds=29), lease_seconds=30, limit=5
    )
    report = deliver_pending(outbox, [hook], now=T0 + pd.Timedelta(seconds=31), worker_id="b")

    assert during == []
    assert report.delivered == 1
    assert outbox.hook_calls()["attempts"].tolist() == [2]
    # Worker A's late outcome is not recorded over B's.
    assert not outbox.finish_hook_attempt(
        claimed[0].id, "a", status="dead", detail="late", now=T0 + pd.Timedelta(seconds=40)
    )
    assert outbox.hook_calls()["status"].tolist() == ["delivered"]


def test_two_workers_never_send_the_same_action(outbox_url, http_receiver):
    http_receiver.delay = 0.005
    hook = _hook(http_receiver.url)
    events = [_event(0, component=f"gpu-{i:02d}") for i in range(40)]
    setup = RiskStore(outbox_url)
    setup.write_scores_and_actions(_scores(events), decide_actions(events, [hook], setup))
    setup.close()
    reports = {}
    start = threading.Barrier(2)

    def work(name):
        store = RiskStore(outbox_url)
        start.wait()
        reports[name] = deliver_pending(store, [hook], worker_id=name, max_actions=100)
        store.close()

    threads = [threading.Thread(target=work, args=(name,)) for name in ("w1", "w2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    keys = [request["headers"]["Idempotency-Key"] for request in http_receiver.requests]
    assert sorted(keys) == sorted(event.idempotency_key for event in events)
    assert len(set(keys)) == len(keys) == 40
    assert reports["w1"].delivered + reports["w2"].delivered == 40
    assert set(reports["w1"].ids).isdisjoint(reports["w2"].ids)
    # Both workers took part, so the claims really did run concurrently.
    assert reports["w1"].delivered > 0
    assert reports["w2"].delivered > 0
    check = RiskStore(outbox_url)
    assert check.hook_calls()["attempts"].tolist() == [1] * 40
    check.close()


def test_breaker_opens_defers_and_half_opens(outbox, http_receiver, caplog):
    http_receiver.status = 500
    hook = _hook(
        http_receiver.url,
        breaker_failures=2,
        breaker_cooldown_seconds=60,
        backoff_seconds=10.0,
        backoff_max_seconds=10.0,
    )
    events = [_event(0, component=f"gpu-{i}") for i in range(4)]
    outbox.enqueue_actions(decide_actions(events, [hook], outbox, now=T0))

    with caplog.at_level("WARNING", logger="predictor.hooks.breaker"):
        first = deliver_pending(outbox, [hook], now=T0, worker_id="w")

    # Two failures open the breaker; the other two actions wait without an attempt.
    assert (first.attempted, first.retried, first.deferred) == (2, 2, 2)
    assert len(http_receiver.requests) == 2
    assert any("opened after 2 consecutive failures" in r.getMessage() for r in caplog.records)
    stored = outbox.hook_calls()
    assert sorted(stored["attempts"].tolist()) == [0, 0, 1, 1]
    [state] = breaker_states(outbox, [hook], now=T0 + pd.Timedelta(seconds=1))
    assert (state.state, state.consecutive_failures) == ("open", 2)

    http_receiver.status = 200
    later = T0 + pd.Timedelta(seconds=61)
    assert breaker_states(outbox, [hook], now=later)[0].state == "half_open"
    second = deliver_pending(outbox, [hook], now=later, worker_id="w")

    assert second.delivered == 4
    assert breaker_states(outbox, [hook], now=later)[0].state == "closed"
