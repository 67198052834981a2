"""A benchmark fleet in a predictor home: telemetry ingested, models trained.

The training, scoring and features stages share this setup. The fleet replays a day of
real SMD and ASD rows at 5-minute steps (:data:`TRAIN_STEPS`) for training, then
:data:`SCORED_STEPS` more grid points that the scoring cycles score. Components of a
source share one ensemble (``[model] sharing = "group"``), and every component has a
forecaster on the thresholded metric.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmarks.fleet import generate_fleet, write_fleet_config
from benchmarks.stages import StageContext
from predictor.config import Settings, load_settings
from predictor.telemetry import TelemetryStore
from predictor.training import TrainingWindow

logger = logging.getLogger(__name__)

#: A day of 5-minute grid points trains every component.
TRAIN_STEPS = 288
#: Grid points after training: a first scoring cycle and the measured one.
SCORED_STEPS = 2
#: Components appended to the telemetry store per call while backfilling.
APPEND_COMPONENTS = 1000
#: Grid points at the end, scored ones included, appended one 5-minute step at a time.
RECENT_STEPS = 24
#: The model settings of the benchmark fleet: the product defaults, shared per group.
MODEL = {"sharing": "group"}

DONE_MARKER = "telemetry-v2.done"


@dataclass(frozen=True)
class FleetHome:
    """Paths and times of a prepared benchmark fleet."""

    settings: Settings
    telemetry: TelemetryStore
    train_end: pd.Timestamp
    step: pd.Timedelta

    def windows(self) -> dict[str, TrainingWindow]:
        """Return each component's training window: the day up to ``train_end``."""
        window = TrainingWindow(None, self.train_end)
        return {declared.name: window for declared in self.settings.components}


def fleet_dir(ctx: StageContext) -> Path:
    """Return the fleet's folder, beside the stage folders, so that stages share one fleet."""
    return ctx.workdir.parent / f"fleet-{ctx.components}"


def open_home(ctx: StageContext) -> FleetHome:
    """Open the fleet prepared by :func:`prepare_home`."""
    folder = fleet_dir(ctx)
    settings = load_settings(
        folder / "predictor.toml", environ={"PREDICTOR_HOME": str(folder / "home")}
    )
    step = pd.Timedelta(seconds=float(settings.model.step_seconds))
    start = pd.Timestamp("2026-01-05T00:00:00Z")
    return FleetHome(
        settings=settings,
        telemetry=TelemetryStore(settings.telemetry_dir),
        train_end=start + step * (TRAIN_STEPS - 1),
        step=step,
    )


def prepare_home(ctx: StageContext) -> FleetHome:
    """Generate the fleet, write its configuration and ingest its rows, once."""
    folder = fleet_dir(ctx)
    if (folder / DONE_MARKER).is_file():
        return open_home(ctx)
    started = time.perf_counter()
    fleet = generate_fleet(ctx.components, steps=TRAIN_STEPS + SCORED_STEPS, data_dir=ctx.data_dir)
    write_fleet_config(folder / "predictor.toml", fleet, model=MODEL)
    home = open_home(ctx)
    names = list(fleet.groups)
    rows = fleet.rows
    # The older rows arrive as one backfill per chunk of components; the last
    # RECENT_STEPS grid points arrive as the ingest DAG appends them, one append of the
    # whole fleet every 5 minutes, which is what a scoring cycle then reads.
    recent_from = home.train_end - home.step * (RECENT_STEPS - SCORED_STEPS - 1)
    older = rows[rows["timestamp"] < recent_from]
    for start in range(0, len(names), APPEND_COMPONENTS):
        chunk = older[older["component"].isin(names[start : start + APPEND_COMPONENTS])]
        home.telemetry.append(chunk.astype({"component": str, "metric": str}))
    recent = rows[rows["timestamp"] >= recent_from]
    for _, step_rows in recent.groupby("timestamp", sort=True):
        home.telemetry.append(step_rows.astype({"component": str, "metric": str}))
    (folder / DONE_MARKER).write_text("ok\n", encoding="utf-8")
    logger.info(
        "fleet home: %d components, %d rows ingested in %.1f s",
        ctx.components,
        len(rows),
        time.perf_counter() - started,
    )
    return home
