"""One scoring cycle for a fleet: features, ensemble, forecasts, risk, publish.

The fleet is trained on a day of 5-minute telemetry (one shared ensemble per group,
a forecaster per component) and scored once up to the grid point after training, as
the first scoring run after a training does. The measured cycle is the next one: every
component gains one grid point, which :func:`predictor.pipeline.score` scores, turns
into a risk and a level, and writes to a SQLite risk store in one transaction per
batch. Loading the trained model, which a scoring run does once, is timed apart.
"""

from __future__ import annotations

import json
import logging
import shutil
import time

from benchmarks.stages import StageContext
from benchmarks.stages._fleet_home import open_home, prepare_home
from predictor import pipeline
from predictor.lifecycle.serialization import load_fleet, save_fleet
from predictor.store import RiskStore
from predictor.training import train_fleet

logger = logging.getLogger(__name__)

MODEL_FILE = "fleet-v2.skops"
TEMPLATE = "risk-after-first-cycle-v2.db"
FIRST_CYCLE = "first-cycle-v2.json"


def prepare(ctx: StageContext) -> None:
    """Ingest, train and run the first scoring cycle, once."""
    home = prepare_home(ctx)
    if (ctx.workdir / TEMPLATE).is_file():
        return
    fleet, _ = train_fleet(home.settings, home.telemetry, home.windows())
    fleet.version = "benchmark-fleet/1"
    save_fleet(fleet, ctx.workdir / MODEL_FILE)

    partial = ctx.workdir / f"{TEMPLATE}.partial"
    partial.unlink(missing_ok=True)
    store = RiskStore(f"sqlite:///{partial}")
    started = time.perf_counter()
    result = pipeline.score(
        home.settings,
        home.train_end + home.step,
        fleet=fleet,
        telemetry=home.telemetry,
        store=store,
    )
    first_s = time.perf_counter() - started
    store.close()
    partial.rename(ctx.workdir / TEMPLATE)
    (ctx.workdir / FIRST_CYCLE).write_text(
        json.dumps({"first_cycle_s": round(first_s, 2), "scores": result.scores_written})
    )


def measure(ctx: StageContext) -> dict:
    """Load the model, then time the next scoring cycle of every component."""
    home = open_home(ctx)
    database = ctx.workdir / "risk-measure.db"
    shutil.copyfile(ctx.workdir / TEMPLATE, database)
    store = RiskStore(f"sqlite:///{database}")

    started = time.perf_counter()
    fleet = load_fleet(ctx.workdir / MODEL_FILE)
    load_s = time.perf_counter() - started

    started = time.perf_counter()
    result = pipeline.score(
        home.settings,
        home.train_end + 2 * home.step,
        fleet=fleet,
        telemetry=home.telemetry,
        store=store,
    )
    wall_s = time.perf_counter() - started
    store.close()
    if result.components_scored != ctx.components or result.failed_components:
        raise RuntimeError(
            f"scoring: expected {ctx.components} components scored, got "
            f"{result.components_scored} and {len(result.failed_components)} failures"
        )
    first = json.loads((ctx.workdir / FIRST_CYCLE).read_text())
    logger.info(
        "scoring: %d components scored in %.2f s (model loaded in %.2f s)",
        result.components_scored,
        wall_s,
        load_s,
    )
    return {
        "wall_s": round(wall_s, 3),
        "components_per_s": round(result.components_scored / wall_s, 1),
        "scores_written": result.scores_written,
        "model_load_s": round(load_s, 2),
        "first_cycle_s": first["first_cycle_s"],
    }
