"""Guardrails through dispatch: budgets, dry run, stale telemetry, fail-back, hysteresis.

Scores are written to a real SQLite risk store and the hooks post to a receiver on
127.0.0.1, so the failover state is read back the way a scoring process reads it.
"""

from __future__ import annotations

import json

import jsonschema
import pandas as pd
import pytest

from predictor.config import BudgetConfig, HookConfig, LevelConfig, load_settings
from predictor.exceptions import ConfigError
from predictor.hooks import dispatch_hooks, level_entries
from predictor.hooks.guardrails import FailoverState, decide
from predictor.hooks.schema import payload_schema
from predictor.risk import LevelState, assign_levels

GROUP_SIZE = 10


def _hook(url, name="drain", **changes):
    values = {"name": name, "type": "webhook", "url": url, "cooldown_minutes": 60.0}
    values.update(changes)
    return HookConfig(**values)


def _scores(t, levels, previous, group="pool-a", start=0):
    """One score row per component ``gpu-{start + i}`` at time ``t``."""
    names = [f"gpu-{start + i}" for i in range(len(levels))]
    return pd.DataFrame(
        {
            "component": names,
            "group_name": group,
            "scored_at": t,
            "risk": [0.95 if level == "critical" else 0.1 for level in levels],
            "level": levels,
            "previous_level": previous,
            "model_version": "3",
            "drivers": [[{"metric": "gpu_temp_celsius", "contribution": 0.8}]] * len(levels),
        }
    )


def _dispatch_per_component(scores, hooks, store, tmp_path, **kwargs):
    """Write the scores, then dispatch each component's events on their own, as scoring does."""
    store.write_scores(scores)
    records = []
    for _component, rows in scores.groupby("component", sort=True):
        events = level_entries(rows, horizon_minutes=60)
        records += dispatch_hooks(events, hooks, store, home=tmp_path, **kwargs)
    return records


@pytest.fixture
def fleet(store, t0):
    """Ten components of pool-a, all normal five minutes before t0."""
    store.write_scores(_scores(t0 - pd.Timedelta(minutes=5), ["normal"] * GROUP_SIZE, None))
    return store


def test_budget_holds_storm(http_receiver, fleet, tmp_path, t0):
    store = fleet
    drain = _hook(http_receiver.url)
    pager = _hook(
        http_receiver.url.replace("/hook", "/budget"), name="pager", kind="budget_exceeded"
    )
    budgets = (BudgetConfig(scope="group", max_percent=20.0),)
    # 40 % of the group goes critical in one scoring run.
    storm = _scores(t0, ["critical"] * 4 + ["normal"] * 6, ["normal"] * 10)

    records = _dispatch_per_component(storm, [drain, pager], store, tmp_path, budgets=budgets)

    drained = [r["json"]["component"] for r in http_receiver.requests if r["path"] == "/hook"]
    alerts = [r["json"] for r in http_receiver.requests if r["path"] == "/budget"]
    assert drained == ["gpu-0", "gpu-1"]
    assert len(alerts) == 1
    assert alerts[0]["event"] == "budget_exceeded"
    assert alerts[0]["component"] == "group:pool-a"
    assert alerts[0]["budget"]["allowed"] == 2
    assert alerts[0]["budget"]["components"] == GROUP_SIZE
    assert alerts[0]["budget"]["held"] == ["gpu-2"]
    held = store.hook_calls(hook="drain")
    assert held["status"].tolist() == ["delivered", "delivered", "held", "held"]
    assert held.loc[held["status"] == "held", "component"].tolist() == ["gpu-2", "gpu-3"]
    assert "max_percent = 20: at most 2 of 10" in held["attempt_detail"].iloc[2]
    assert [r.status for r in records].count("held") == 2

    # The storm goes on five minutes later: one more component is held, no second alert.
    later = _scores(t0 + pd.Timedelta(minutes=5), ["critical"], ["normal"], start=4)
    _dispatch_per_component(later, [drain, pager], store, tmp_path, budgets=budgets)

    alerts = [r for r in http_receiver.requests if r["path"] == "/budget"]
    assert len(alerts) == 1
    assert store.hook_calls(hook="drain", component="gpu-4")["status"].tolist() == ["held"]
    assert store.hook_calls(hook="pager")["status"].tolist() == ["delivered", "skipped_cooldown"]


def test_budget_frees_after_recovery(http_receiver, fleet, tmp_path, t0):
    store = fleet
    drain = _hook(http_receiver.url)
    budgets = (BudgetConfig(scope="fleet", max_components=1),)
    _dispatch_per_component(
        _scores(t0, ["critical"], ["normal"]), [drain], store, tmp_path, budgets=budgets
    )
    # A recovery counts from the next scoring time on, so gpu-1 is held at t0 + 10 min.
    _dispatch_per_component(
        _scores(t0 + pd.Timedelta(minutes=10), ["normal", "critical"], ["critical", "normal"]),
        [drain],
        store,
        tmp_path,
        budgets=budgets,
    )

    _dispatch_per_component(
        _scores(t0 + pd.Timedelta(minutes=15), ["critical"], ["normal"], start=2),
        [drain],
        store,
        tmp_path,
        budgets=budgets,
    )

    statuses = store.hook_calls(hook="drain")[["component", "status"]].values.tolist()
    assert statuses == [["gpu-0", "delivered"], ["gpu-1", "held"], ["gpu-2", "delivered"]]


def test_budget_per_hour(http_receiver, fleet, tmp_path, t0):
    store = fleet
    drain = _hook(http_receiver.url, cooldown_minutes=0.0)
    budgets = (BudgetConfig(scope="group", group="pool-a", max_per_hour=1),)
    _dispatch_per_component(
        _scores(t0, ["critical"], ["normal"]), [drain], store, tmp_path, budgets=budgets
    )
    _dispatch_per_component(
        _scores(t0 + pd.Timedelta(minutes=5), ["normal"], ["critical"]),
        [drain],
        store,
        tmp_path,
        budgets=budgets,
    )
    _dispatch_per_component(
        _scores(t0 + pd.Timedelta(minutes=30), ["critical"], ["normal"], start=1),
        [drain],
        store,
        tmp_path,
        budgets=budgets,
    )
    _dispatch_per_component(
        _scores(t0 + pd.Timedelta(minutes=61), ["critical"], ["normal"], start=2),
        [drain],
        store,
        tmp_path,
        budgets=budgets,
    )

    calls = store.hook_calls(hook="drain")
    assert calls[["component", "status"]].values.tolist() == [
        ["gpu-0", "delivered"],
        ["gpu-1", "held"],
        ["gpu-2", "delivered"],
    ]
    assert "max_per_hour = 1" in calls["attempt_detail"].iloc[1]


def test_global_dry_run_sends_nothing(http_receiver, fleet, tmp_path, t0):
    store = fleet
    hooks = [
        _hook(http_receiver.url),
        _hook(http_receiver.url, name="pager", kind="budget_exceeded"),
        _hook(http_receiver.url, name="stale", kind="telemetry_stale"),
    ]
    budgets = (BudgetConfig(max_components=1),)
    storm = _scores(t0, ["critical", "critical", "unknown"], ["normal"] * 3)

    records = _dispatch_per_component(storm, hooks, store, tmp_path, budgets=budgets, dry_run=True)

    assert http_receiver.requests == []
    assert sorted((r.hook, r.component, r.status) for r in records) == [
        ("drain", "gpu-0", "dry_run"),
        ("drain", "gpu-1", "held"),
        ("pager", "group:pool-a", "dry_run"),
        ("stale", "gpu-2", "dry_run"),
    ]
    assert all(r.idempotency_key.startswith("dry-run:") for r in records)


def test_hook_dry_run_sends_nothing(http_receiver, store, tmp_path, t0):
    hooks = [_hook(http_receiver.url, dry_run=True)]

    records = _dispatch_per_component(
        _scores(t0, ["critical"], ["normal"]), hooks, store, tmp_path
    )

    assert http_receiver.requests == []
    assert [r.status for r in records] == ["dry_run"]


def test_hook_dry_run_uses_no_budget(http_receiver, store, tmp_path, t0):
    trial = _hook(http_receiver.url, name="trial", dry_run=True)
    drain = _hook(http_receiver.url)
    budgets = (BudgetConfig(scope="fleet", max_components=1),)
    _dispatch_per_component(
        _scores(t0, ["critical"], ["normal"]), [trial], store, tmp_path, budgets=budgets
    )

    _dispatch_per_component(
        _scores(t0 + pd.Timedelta(minutes=5), ["critical"], ["normal"], start=1),
        [trial, drain],
        store,
        tmp_path,
        budgets=budgets,
    )

    assert [r["json"]["component"] for r in http_receiver.requests] == ["gpu-1"]


def test_stale_telemetry_never_fails_over(http_receiver, store, tmp_path, t0):
    every_level = ("normal", "elevated", "high", "critical")
    drain = _hook(http_receiver.url, on_levels=every_level, cooldown_minutes=0.0)
    stale = _hook(
        http_receiver.url.replace("/hook", "/stale"), name="stale", kind="telemetry_stale"
    )
    scores = _scores(t0, ["unknown", "unknown"], ["normal", "critical"])

    records = _dispatch_per_component(scores, [drain, stale], store, tmp_path)

    assert {r["path"] for r in http_receiver.requests} == {"/stale"}
    payloads = [r["json"] for r in http_receiver.requests]
    assert [p["component"] for p in payloads] == ["gpu-0", "gpu-1"]
    assert {p["event"] for p in payloads} == {"telemetry_stale"}
    assert {p["level"] for p in payloads} == {"unknown"}
    assert [p["risk"] for p in payloads] == [None, None]
    assert [r.hook for r in records] == ["stale", "stale"]
    assert store.hook_calls(hook="drain").empty


def test_fail_back_on_recovery(http_receiver, fleet, tmp_path, t0):
    store = fleet
    drain = _hook(http_receiver.url)
    back = _hook(http_receiver.url.replace("/hook", "/back"), name="undrain", kind="fail_back")
    hooks = [drain, back]
    _dispatch_per_component(
        _scores(t0, ["critical", "critical"], ["normal"] * 2), hooks, store, tmp_path
    )
    # gpu-0 recovers through hysteresis (critical, then high, then normal); gpu-1 goes
    # silent and comes back with one normal score.
    _dispatch_per_component(
        _scores(t0 + pd.Timedelta(minutes=5), ["high", "unknown"], ["critical"] * 2),
        hooks,
        store,
        tmp_path,
    )
    _dispatch_per_component(
        _scores(t0 + pd.Timedelta(minutes=10), ["normal", "normal"], ["high", "unknown"]),
        hooks,
        store,
        tmp_path,
    )
    # A normal component that never failed over has nothing to fail back.
    _dispatch_per_component(
        _scores(t0 + pd.Timedelta(minutes=15), ["normal"], ["elevated"], start=2),
        hooks,
        store,
        tmp_path,
    )

    backs = [r["json"] for r in http_receiver.requests if r["path"] == "/back"]
    assert [(p["component"], p["event"], p["previous_level"]) for p in backs] == [
        ("gpu-0", "fail_back", "high")
    ]
    held = store.hook_calls(hook="undrain", component="gpu-1")
    assert held["status"].tolist() == ["held"]
    assert "not a confirmed recovery" in held["attempt_detail"].iloc[0]


def test_hovering_component_triggers_once(http_receiver, store, tmp_path, t0):
    # Risk enters critical (0.85), then hovers around its threshold and around its exit
    # threshold (0.75) for 36 scores.
    risk = [0.86] * 3 + [0.84, 0.86, 0.74, 0.76] * 9
    states, _ = assign_levels(risk, [False] * len(risk), LevelState(), LevelConfig())
    levels = [state.level for state in states]
    assert levels[2:] == ["critical"] * (len(risk) - 2)
    scores = pd.DataFrame(
        {
            "component": "gpu-0",
            "group_name": "pool-a",
            "scored_at": [t0 + pd.Timedelta(minutes=5 * i) for i in range(len(risk))],
            "risk": risk,
            "level": levels,
            "previous_level": ["normal", *levels[:-1]],
            "model_version": "3",
        }
    )
    # Without a cooldown only the level hysteresis stops repeats.
    drain = _hook(http_receiver.url, cooldown_minutes=0.0)

    _dispatch_per_component(scores, [drain], store, tmp_path)

    assert len(http_receiver.requests) == 1
    assert http_receiver.requests[0]["json"]["level"] == "critical"


def test_decide_is_pure():
    t = pd.Timestamp("2024-05-01 12:00", tz="UTC")
    events = level_entries(_scores(t, ["critical"] * 3, ["normal"] * 3), horizon_minutes=60)
    drain = _hook("http://127.0.0.1:9/hook")
    state = FailoverState(
        at=t, in_failover=frozenset({"gpu-9"}), groups={f"gpu-{i}": "pool-a" for i in range(10)}
    )

    decisions = decide(events, [drain], state, (BudgetConfig(max_components=2),))

    assert [(d.event.component, d.held) for d in decisions] == [
        ("gpu-0", False),
        ("gpu-1", True),
        ("gpu-2", True),
    ]
    assert state.in_failover == frozenset({"gpu-9"})


def test_guardrail_payloads_match_schema(http_receiver, fleet, tmp_path, t0):
    store = fleet
    hooks = [
        _hook(http_receiver.url),
        _hook(http_receiver.url, name="pager", kind="budget_exceeded"),
        _hook(http_receiver.url, name="stale", kind="telemetry_stale"),
        _hook(http_receiver.url, name="back", kind="fail_back"),
    ]
    budgets = (BudgetConfig(max_components=1),)
    _dispatch_per_component(
        _scores(t0, ["critical", "critical", "unknown"], ["normal"] * 3),
        hooks,
        store,
        tmp_path,
        budgets=budgets,
    )
    _dispatch_per_component(
        _scores(t0 + pd.Timedelta(minutes=5), ["normal"], ["critical"]),
        hooks,
        store,
        tmp_path,
        budgets=budgets,
    )

    payloads = [request["json"] for request in http_receiver.requests]
    validator = jsonschema.Draft202012Validator(
        payload_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    assert sorted(p["event"] for p in payloads) == [
        "budget_exceeded",
        "fail_back",
        "level_entered",
        "telemetry_stale",
    ]
    for payload in payloads:
        validator.validate(payload)


def test_alertmanager_format_webhook(http_receiver, store, tmp_path, t0):
    hook = _hook(http_receiver.url, format="alertmanager")

    _dispatch_per_component(_scores(t0, ["critical"], ["normal"]), [hook], store, tmp_path)

    body = http_receiver.requests[0]["json"]
    assert body["version"] == "4"
    assert body["status"] == "firing"
    alert = body["alerts"][0]
    assert alert["labels"]["component"] == "gpu-0"
    assert alert["labels"]["group"] == "pool-a"
    assert alert["labels"]["level"] == "critical"
    assert alert["annotations"]["risk"] == "0.9500"
    assert alert["annotations"]["drivers"] == "gpu_temp_celsius (0.80)"
    assert alert["annotations"]["idempotency_key"] == "gpu-0:normal->critical:" + t0.isoformat()
    assert alert["startsAt"] == "2024-05-01T12:00:00.000000Z"


@pytest.mark.parametrize(
    ("toml", "match"),
    [
        (
            '[[hooks]]\nname = "a"\ntype = "webhook"\nurl = "http://x"\nkind = "page"\n',
            r"hooks\[0\]\.kind: expected one of .*got 'page'",
        ),
        (
            '[[hooks]]\nname = "a"\ntype = "command"\nargv = ["x"]\nformat = "alertmanager"\n',
            r"hooks\[0\]\.format: 'alertmanager' applies to webhook hooks only",
        ),
        (
            '[[hooks]]\nname = "a"\ntype = "alertmanager"\nurl = "am:9093"\n',
            r"hooks\[0\]\.url: expected the Alertmanager base address",
        ),
        (
            '[[hooks]]\nname = "a"\ntype = "webhook"\nurl = "http://x"\non_levels = ["unknown"]\n',
            r"hooks\[0\]\.on_levels: expected one of",
        ),
        (
            (
                '[[hooks]]\nname = "a"\ntype = "alertmanager"\nurl = "http://x"\n'
                "resolve_timeout_minutes = 0\n"
            ),
            r"hooks\[0\]\.resolve_timeout_minutes: expected a positive",
        ),
        (
            (
                '[[hooks]]\nname = "a"\ntype = "webhook"\nurl = "http://x"\n'
                '[[hooks]]\nname = "a"\ntype = "webhook"\nurl = "http://y"\n'
            ),
            r"hooks\[1\]\.name: 'a' is already used by hooks\[0\]",
        ),
        ('[[budgets]]\nscope = "group"\n', r"budgets\[0\]: expected at least one of"),
        (
            '[[budgets]]\nscope = "rack"\nmax_components = 1\n',
            r"budgets\[0\]\.scope: expected one of \['group', 'fleet'\], got 'rack'",
        ),
        (
            '[[budgets]]\nscope = "fleet"\ngroup = "a"\nmax_components = 1\n',
            r"budgets\[0\]\.group: a fleet budget covers every component",
        ),
        (
            "[[budgets]]\nmax_percent = 120\n",
            r"budgets\[0\]\.max_percent: expected a percentage in \[0, 100\], got 120",
        ),
        (
            "[[budgets]]\nmax_components = -1\n",
            r"budgets\[0\]\.max_components: expected an integer >= 0, got -1",
        ),
        ('[guardrails]\ndry_run = "yes"\n', r"guardrails\.dry_run: expected true or false"),
    ],
)
def test_invalid_guardrail_config(tmp_path, isolated_env, toml, match):
    path = tmp_path / "predictor.toml"
    path.write_text(toml, encoding="utf-8")

    with pytest.raises(ConfigError, match=match):
        load_settings(path, environ={})


def test_guardrail_config_loads(tmp_path, isolated_env):
    path = tmp_path / "predictor.toml"
    path.write_text(
        "[guardrails]\ndry_run = true\n"
        '[[budgets]]\nscope = "group"\ngroup = "pool-a"\nmax_percent = 20\nmax_per_hour = 3\n'
        '[[budgets]]\nscope = "fleet"\nmax_components = 50\n'
        '[[hooks]]\nname = "am"\ntype = "alertmanager"\nurl = "http://127.0.0.1:9093"\n'
        'on_levels = ["high", "critical", "unknown"]\n',
        encoding="utf-8",
    )

    settings = load_settings(path, environ={"PREDICTOR_GUARDRAILS__DRY_RUN": "false"})

    assert settings.guardrails.dry_run is False
    assert settings.budgets == (
        BudgetConfig(scope="group", group="pool-a", max_percent=20.0, max_per_hour=3),
        BudgetConfig(scope="fleet", max_components=50),
    )
    assert settings.hooks[0].on_levels == ("high", "critical", "unknown")
    assert json.loads(json.dumps(settings.hooks[0].resolve_timeout_minutes)) == 15.0


def test_first_run_budget_counts_configured_group(tmp_path):
    from predictor.hooks import HookEvent, decide_actions
    from predictor.store import RiskStore

    drain = HookConfig(name="drain", type="webhook", url="http://127.0.0.1:9/hook")
    budgets = (BudgetConfig(scope="group", max_percent=40.0),)
    configured = {f"gpu-{number}": "pool-a" for number in range(5)}
    event = HookEvent(
        component="gpu-0",
        group="pool-a",
        level="critical",
        previous_level="high",
        risk=0.95,
        scored_at=pd.Timestamp("2024-05-01 12:00", tz="UTC"),
        horizon_minutes=60,
    )
    store = RiskStore(f"sqlite:///{tmp_path / 'risk.db'}")

    store_only = decide_actions([event], [drain], store, budgets=budgets)
    with_config = decide_actions([event], [drain], store, budgets=budgets, groups=configured)
    store.close()

    # 40 % of the one component in the empty store rounds down to 0.
    assert [action.status for action in store_only] == ["held"]
    assert [action.status for action in with_config] == ["pending"]
