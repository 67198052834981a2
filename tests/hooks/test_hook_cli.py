"""`predictor hooks list|retry|test|deliver` on a real risk store and receiver."""

from __future__ import annotations

import pandas as pd
import pytest

from predictor.cli import main
from predictor.config import load_settings
from predictor.hooks import HookEvent, decide_actions
from predictor.store import RiskStore

T0 = pd.Timestamp("2024-05-01 12:00", tz="UTC")


@pytest.fixture
def hooks_env(isolated_env, tmp_path, http_receiver):
    config = tmp_path / "predictor.toml"
    config.write_text(
        "[[hooks]]\n"
        'name = "pager"\n'
        'type = "webhook"\n'
        f'url = "{http_receiver.url}"\n'
        "cooldown_minutes = 0\n"
        "max_attempts = 2\n"
        "backoff_seconds = 0\n"
        "backoff_max_seconds = 0\n"
    )
    settings = load_settings(config)
    return config, settings


def _queue(settings, components):
    events = [
        HookEvent(
            component=component,
            group=None,
            level="critical",
            previous_level="high",
            risk=0.9,
            scored_at=T0,
            horizon_minutes=60,
        )
        for component in components
    ]
    store = RiskStore(settings.store_url)
    store.enqueue_actions(decide_actions(events, settings.hooks, store))
    store.close()


def test_deliver_then_list_by_status(hooks_env, http_receiver, capsys):
    config, settings = hooks_env
    _queue(settings, ["gpu-1", "gpu-2"])

    assert main(["--config", str(config), "hooks", "list", "--status", "pending"]) == 0
    listed = capsys.readouterr().out
    assert main(["--config", str(config), "hooks", "deliver"]) == 0
    delivered = capsys.readouterr().out
    assert main(["--config", str(config), "hooks", "list", "--status", "delivered"]) == 0
    after = capsys.readouterr().out

    assert "2 actions: 2 pending" in listed
    assert "2 actions claimed: 2 delivered" in delivered
    assert "2 actions: 2 delivered" in after
    assert len(http_receiver.requests) == 2


def test_retry_dead_action_delivers_it(hooks_env, http_receiver, capsys):
    config, settings = hooks_env
    _queue(settings, ["gpu-1"])
    http_receiver.status = 500
    main(["--config", str(config), "hooks", "deliver"])
    store = RiskStore(settings.store_url)
    [dead] = store.hook_calls(status="dead").itertuples()
    capsys.readouterr()

    http_receiver.status = 200
    code = main(["--config", str(config), "hooks", "retry", str(dead.id)])

    out = capsys.readouterr().out
    assert code == 0
    assert f"action {dead.id} (pager, {dead.idempotency_key}) queued again; now delivered" in out
    assert store.hook_action(dead.id).status == "delivered"
    keys = {request["headers"]["Idempotency-Key"] for request in http_receiver.requests}
    assert keys == {dead.idempotency_key}
    store.close()


def test_retry_delivered_action_rejected(hooks_env, capsys):
    config, settings = hooks_env
    _queue(settings, ["gpu-1"])
    main(["--config", str(config), "hooks", "deliver"])
    capsys.readouterr()

    code = main(["--config", str(config), "hooks", "retry", "1"])

    assert code == 2
    assert "status is 'delivered'; only dead, held, failed actions" in capsys.readouterr().err


def test_hook_test_sends_marked_payload(hooks_env, http_receiver, capsys):
    config, _ = hooks_env

    code = main(["--config", str(config), "hooks", "test", "pager"])

    assert code == 0
    assert "to hook pager: delivered" in capsys.readouterr().out
    [request] = http_receiver.requests
    assert request["json"]["test"] is True
    assert request["headers"]["Idempotency-Key"].startswith("test:pager:")


def test_hook_test_payload_matches_schema(hooks_env, http_receiver):
    import jsonschema

    from predictor.hooks.schema import payload_schema

    config, _ = hooks_env

    assert main(["--config", str(config), "hooks", "test", "pager"]) == 0

    [request] = http_receiver.requests
    jsonschema.validate(request["json"], payload_schema())
    assert request["json"]["event"] == "test"


def test_global_dry_run_sends_nothing(hooks_env, http_receiver, monkeypatch, capsys):
    config, settings = hooks_env
    _queue(settings, ["gpu-1"])
    monkeypatch.setenv("PREDICTOR_GUARDRAILS__DRY_RUN", "true")

    delivered = main(["--config", str(config), "hooks", "deliver"])
    tested = main(["--config", str(config), "hooks", "test", "pager"])

    assert delivered == 0
    assert "0 actions claimed: 0 delivered" in capsys.readouterr().out
    assert tested == 2
    assert http_receiver.requests == []


def test_hook_test_unknown_name_exits_2(hooks_env, capsys):
    config, _ = hooks_env

    code = main(["--config", str(config), "hooks", "test", "nope"])

    assert code == 2
    assert "hook 'nope': not configured; expected one of: pager" in capsys.readouterr().err
