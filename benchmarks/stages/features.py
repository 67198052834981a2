"""Features for a fleet: the regular grid and trailing-window features of one cycle.

Times what a scoring cycle does between reading telemetry and calling the ensemble:
binning the rows of every component onto one (component, time, metric) array and
computing the trailing features at the new grid point
(:func:`predictor.batch_scoring.grid_cube` and :func:`~predictor.batch_scoring.features_at`).
The peer is the per-component path of the same library (``build_grid`` and
``make_features`` on each component's rows), timed on a seeded sample of components in
the same run and scaled to the fleet.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from benchmarks.fleet import metric_names
from benchmarks.stages import StageContext
from benchmarks.stages._fleet_home import open_home, prepare_home
from predictor.batch_scoring import features_at, grid_cube
from predictor.features import build_grid, make_features
from predictor.model import ComponentModel
from predictor.telemetry.schema import COMPONENT

logger = logging.getLogger(__name__)

#: Components the per-component peer is timed on.
PEER_SAMPLE = 200


def prepare(ctx: StageContext) -> None:
    """Generate and ingest the fleet's telemetry."""
    prepare_home(ctx)


def measure(ctx: StageContext) -> dict:
    """Time the batch features of one cycle and the per-component peer on a sample."""
    home = open_home(ctx)
    settings = home.settings
    names = [declared.name for declared in settings.components]
    metrics = metric_names()
    window_steps = settings.model.window_steps
    columns = make_features(pd.DataFrame(columns=metrics, dtype="float64"), window_steps).columns
    model = ComponentModel(
        component=names[0],
        group=None,
        step_seconds=home.step.total_seconds(),
        window_steps=window_steps,
        season_steps=None,
        metrics=metrics,
        feature_columns=list(columns),
        train_start=home.train_end,
        train_end=home.train_end,
        ensemble=None,
    )
    scored_at = home.train_end + home.step
    lookback = model.window_steps + (model.season_steps or 0) + 2
    start = scored_at - home.step * lookback
    frame = home.telemetry.read(start=start, end=scored_at)

    started = time.perf_counter()
    cube = grid_cube(frame, names, model.metrics, start, scored_at, home.step)
    features = features_at(cube, lookback, model)
    wall_s = time.perf_counter() - started

    rng = np.random.default_rng(0)
    sample = sorted(rng.choice(len(names), size=min(PEER_SAMPLE, len(names)), replace=False))
    by_component = dict(tuple(frame.groupby(COMPONENT, sort=False, observed=True)))
    peer_rows = [by_component[names[index]].drop(columns=[COMPONENT]) for index in sample]
    started = time.perf_counter()
    for rows in peer_rows:
        grid = build_grid(rows, model.step_seconds, start=start, end=scored_at)
        make_features(grid.reindex(columns=model.metrics), model.window_steps, model.season_steps)
    peer_per_component = (time.perf_counter() - started) / len(peer_rows)
    peer_wall_s = peer_per_component * len(names)

    logger.info(
        "features: %d components, %d rows in %.3f s; per-component path %.2f ms each",
        len(names),
        len(frame),
        wall_s,
        peer_per_component * 1000,
    )
    return {
        "wall_s": round(wall_s, 4),
        "rows": len(frame),
        "rows_per_s": round(len(frame) / wall_s),
        "features": int(features.shape[-1]),
        "peer": "per-component build_grid + make_features",
        "peer_sample": len(peer_rows),
        "peer_wall_s": round(peer_wall_s, 3),
        "ratio": round(peer_wall_s / wall_s, 1),
    }
