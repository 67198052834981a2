"""Training for a fleet: one shared ensemble per group, a forecaster per component.

Times :func:`predictor.training.train_fleet` on a day of 5-minute telemetry per
component (the training window of the daily training run), then writing the fitted
fleet model with skops, as a training run does before logging it to MLflow, and
loading it back, as each scoring run does.
"""

from __future__ import annotations

import logging
import time

from benchmarks.stages import StageContext
from benchmarks.stages._fleet_home import TRAIN_STEPS, open_home, prepare_home
from predictor.lifecycle.serialization import load_fleet, save_fleet
from predictor.training import train_fleet

logger = logging.getLogger(__name__)


def prepare(ctx: StageContext) -> None:
    """Generate and ingest the fleet's telemetry."""
    prepare_home(ctx)


def measure(ctx: StageContext) -> dict:
    """Train the fleet, save the model and load it back."""
    home = open_home(ctx)

    started = time.perf_counter()
    fleet, metrics = train_fleet(home.settings, home.telemetry, home.windows())
    fit_s = time.perf_counter() - started

    path = ctx.workdir / "fleet-measure.skops"
    started = time.perf_counter()
    save_fleet(fleet, path)
    save_s = time.perf_counter() - started

    started = time.perf_counter()
    load_fleet(path)
    load_s = time.perf_counter() - started

    ensembles = {id(model.ensemble) for model in fleet.components.values()}
    wall_s = fit_s + save_s
    logger.info(
        "training: %d components, %d ensembles, %d forecasters fitted in %.1f s, saved in %.1f s",
        len(fleet.components),
        len(ensembles),
        int(metrics["forecasters"]),
        fit_s,
        save_s,
    )
    return {
        "wall_s": round(wall_s, 2),
        "components_per_s": round(len(fleet.components) / wall_s, 1),
        "fit_s": round(fit_s, 2),
        "save_s": round(save_s, 2),
        "load_s": round(load_s, 2),
        "train_steps": TRAIN_STEPS,
        "ensembles": len(ensembles),
        "forecasters": int(metrics["forecasters"]),
        "model_file_mib": round(path.stat().st_size / 2**20, 1),
    }
