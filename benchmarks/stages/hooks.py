"""Hook decisions for a fleet: one level change per component, decided and queued.

The stage times what one scoring run does after scoring
(:func:`predictor.pipeline.score`): :func:`predictor.hooks.decide_actions` over the
level-change events of every component, then
:meth:`predictor.store.RiskStore.write_scores_and_actions`, which writes the scores and
the outbox rows in one transaction, on a real SQLite risk store.

The fleet's configuration (from :func:`benchmarks.fleet.write_fleet_config`) has four
webhook hooks (failover on ``critical``, fail-back, telemetry-stale and budget-exceeded)
and a failover budget of :data:`BUDGET_PERCENT` % per group. One scoring time before the
measured one, the components in :data:`FAILED_OVER` (20 % of the fleet) entered
``critical`` and were failed over. At the measured time every component changes level
as :data:`TRANSITIONS` lists: 20 % enter ``critical`` (failover, held once the group
budget is used), 10 % return to ``normal`` (fail-back), 20 % become ``unknown``
(telemetry stale), and the other half change level without calling a hook. Nothing is
sent: delivery is a separate stage of the scoring run.
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import shutil
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from benchmarks.fleet import generate_fleet, write_fleet_config
from benchmarks.stages import StageContext
from predictor.config import Settings, load_settings
from predictor.hooks import HookEvent, decide_actions
from predictor.store import RiskStore

logger = logging.getLogger(__name__)

#: Percentage of a group's components allowed in failover at once.
BUDGET_PERCENT = 25

#: (previous level, level) of component ``index`` at the measured time, by ``index % 10``.
TRANSITIONS = (
    ("normal", "elevated"),
    ("elevated", "high"),
    ("high", "critical"),
    ("critical", "normal"),
    ("normal", "unknown"),
    ("normal", "elevated"),
    ("high", "critical"),
    ("elevated", "high"),
    ("critical", "high"),
    ("normal", "unknown"),
)
#: ``index % 10`` of the components failed over one scoring time before the measured one.
FAILED_OVER = (3, 8)

#: Cache files of :func:`prepare`; the version changes with what prepare writes.
TEMPLATE = "risk-template-v1.db"
EVENTS = "events-v1.pickle"

#: Grid steps of the generated fleet: enough for a previous and a measured scoring time.
STEPS = 12

HOOKS_TOML = f"""
[[hooks]]
name = "failover"
type = "webhook"
url = "http://127.0.0.1:9/failover"
on_levels = ["critical"]
cooldown_minutes = 60

[[hooks]]
name = "fail-back"
type = "webhook"
kind = "fail_back"
url = "http://127.0.0.1:9/fail-back"

[[hooks]]
name = "stale"
type = "webhook"
kind = "telemetry_stale"
url = "http://127.0.0.1:9/stale"

[[hooks]]
name = "budget"
type = "webhook"
kind = "budget_exceeded"
url = "http://127.0.0.1:9/budget"

[[budgets]]
scope = "group"
max_percent = {BUDGET_PERCENT}
"""


def _settings(workdir: Path) -> Settings:
    return load_settings(
        workdir / "predictor.toml", environ={"PREDICTOR_HOME": str(workdir / "home")}
    )


def _events(
    settings: Settings, at: pd.Timestamp, transition: dict[int, tuple[str, str]]
) -> list[HookEvent]:
    """Return one event per component whose index is in ``transition``."""
    events = []
    for index, declared in enumerate(settings.components):
        if index not in transition:
            continue
        previous, level = transition[index]
        events.append(
            HookEvent(
                component=declared.name,
                group=declared.group,
                level=level,
                previous_level=previous,
                risk=None if level == "unknown" else {"normal": 0.2}.get(level, 0.9),
                scored_at=at,
                horizon_minutes=settings.model.horizon_minutes,
                drivers=[{"metric": "m00", "contribution": 0.6, "kind": "anomaly"}],
                model_version="1",
            )
        )
    return events


def _records(events: list[HookEvent]) -> pd.DataFrame:
    """Return the score rows of ``events``, in the shape the scoring stage writes."""
    return pd.DataFrame(
        {
            "component": [event.component for event in events],
            "group_name": [event.group for event in events],
            "scored_at": [event.scored_at for event in events],
            "risk": [event.risk for event in events],
            "raw_risk": [event.risk for event in events],
            "anomaly_score": [event.risk for event in events],
            "forecast_probability": float("nan"),
            "time_to_threshold_seconds": float("nan"),
            "level": [event.level for event in events],
            "previous_level": [event.previous_level for event in events],
            "pending_level": None,
            "pending_count": 0,
            "drivers": [event.drivers for event in events],
            "model_version": "1",
            "calibrated": False,
            "stale": [event.level == "unknown" for event in events],
            "model_role": "champion",
        }
    )


def _decide_and_write(settings: Settings, store: RiskStore, events: list[HookEvent]) -> dict:
    """Decide and queue the actions of ``events``; return the timings and counts."""
    groups = {declared.name: declared.group for declared in settings.components}
    records = _records(events)

    started = time.perf_counter()
    actions = decide_actions(
        events, settings.hooks, store, budgets=settings.budgets, groups=groups
    )
    decided = time.perf_counter()
    scores_written, queued = store.write_scores_and_actions(records, actions)
    written = time.perf_counter()

    return {
        "decide_s": round(decided - started, 4),
        "write_s": round(written - decided, 4),
        "scores_written": scores_written,
        "actions_queued": queued,
        "actions_by_status": dict(sorted(Counter(a.status for a in actions).items())),
    }


def prepare(ctx: StageContext) -> None:
    """Write the fleet's configuration and a risk store with the earlier failovers."""
    template = ctx.workdir / TEMPLATE
    if template.is_file() and (ctx.workdir / EVENTS).is_file():
        return
    fleet = generate_fleet(ctx.components, steps=STEPS, data_dir=ctx.data_dir)
    config = write_fleet_config(ctx.workdir / "predictor.toml", fleet)
    with config.open("a", encoding="utf-8") as handle:
        handle.write(HOOKS_TOML)
    settings = _settings(ctx.workdir)

    times = fleet.labels["timestamp"].unique()
    earlier, measured = pd.Timestamp(times[-2]), pd.Timestamp(times[-1])
    failed_over = {
        index: ("high", "critical")
        for index in range(ctx.components)
        if index % len(TRANSITIONS) in FAILED_OVER
    }
    partial = ctx.workdir / f"{TEMPLATE}.partial"
    partial.unlink(missing_ok=True)
    store = RiskStore(f"sqlite:///{partial}")
    # The earlier failovers are decided without the budget, so every one is in failover.
    _decide_and_write(
        dataclasses.replace(settings, budgets=()),
        store,
        _events(settings, earlier, failed_over),
    )
    store.close()
    partial.rename(template)

    transitions = {index: TRANSITIONS[index % len(TRANSITIONS)] for index in range(ctx.components)}
    events = _events(settings, measured, transitions)
    (ctx.workdir / EVENTS).write_bytes(pickle.dumps(events))
    logger.info(
        "hooks: prepared %d events for %d components, %d in failover before",
        len(events),
        ctx.components,
        len(failed_over),
    )


def measure(ctx: StageContext) -> dict:
    """Time hook decisions and the outbox write for one event per component."""
    settings = _settings(ctx.workdir)
    events = pickle.loads((ctx.workdir / EVENTS).read_bytes())
    database = ctx.workdir / "risk-measure.db"
    shutil.copyfile(ctx.workdir / TEMPLATE, database)
    store = RiskStore(f"sqlite:///{database}")

    fields = _decide_and_write(settings, store, events)
    store.close()

    wall_s = fields["decide_s"] + fields["write_s"]
    logger.info(
        "hooks: %d events decided in %.3f s, %d scores and %d actions written in %.3f s",
        len(events),
        fields["decide_s"],
        fields["scores_written"],
        fields["actions_queued"],
        fields["write_s"],
    )
    return {
        "wall_s": round(wall_s, 4),
        "events": len(events),
        "events_per_s": round(len(events) / wall_s, 1),
        **fields,
    }
