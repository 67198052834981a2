"""Ingest stage: a long-format Parquet file into the telemetry store, next to pyarrow.

``prepare`` writes one long Parquet file of ``ctx.components`` components x 20 metrics x
12 steps of 5 minutes (one hour) from the fleet generator, and the hours that follow it
for the append measure. ``measure`` times, in the same run and alternating:

- pyarrow alone: ``pyarrow.parquet.read_table`` of the file (the peer);
- ours: :func:`predictor.pipeline.ingest`, the function behind ``predictor ingest FILE``,
  into a fresh store (read, validate, deduplicate, write, commit);
- append: ingest of a new hour into a store that already holds the previous day of
  the same components, so the cost of deduplication against stored rows shows.

The fresh ingest and pyarrow's read are repeated :data:`REPEATS` times, the append
:data:`APPEND_REPEATS` times, and the medians are reported. Small files take a few
milliseconds, so more repeats keep their median steady on a shared machine.
"""

from __future__ import annotations

import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from benchmarks.fleet import generate_fleet
from benchmarks.stages import StageContext
from predictor import pipeline
from predictor.config import SourceConfig, load_settings
from predictor.telemetry import TelemetryStore

METRICS = 20
STEPS = 12
STEP_SECONDS = 300
REPEATS = 15
APPEND_REPEATS = 5
HOURS_PER_DAY = 24
#: The measured hour starts here; the store of the append measure holds the day before.
START = pd.Timestamp("2026-03-02T00:00:00Z")
HOUR_FILE = "fleet-hour.parquet"
HISTORY_HOME = "history"


def _hour_file(ctx: StageContext, start: pd.Timestamp, name: str) -> Path:
    fleet = generate_fleet(
        ctx.components, steps=STEPS, data_dir=ctx.data_dir, metrics=METRICS,
        step_seconds=STEP_SECONDS, start=start.isoformat(),
    )
    path = _path(ctx, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fleet.rows.to_parquet(path, index=False)
    return path


def _path(ctx: StageContext, name: str) -> Path:
    """Return a file of this stage; prepare and measure may run in separate processes."""
    return Path(ctx.workdir) / "ingest" / name


def _next_hour_name(index: int) -> str:
    return f"fleet-next-{index}.parquet"


def _settings(ctx: StageContext, name: str, *, clear: bool = True):
    home = _path(ctx, name)
    if clear:
        shutil.rmtree(home, ignore_errors=True)
    config = Path(ctx.workdir) / "ingest" / "predictor.toml"
    config.write_text("", encoding="utf-8")
    return load_settings(config, environ={"PREDICTOR_HOME": str(home)})


def _ingest(settings, path: Path) -> tuple[float, int]:
    source = SourceConfig(name=path.stem, format="long", path=path)
    started = time.perf_counter()
    summaries = pipeline.ingest(settings, [source], TelemetryStore(settings.telemetry_dir))
    elapsed = time.perf_counter() - started
    return elapsed, summaries[0].written


def prepare(ctx: StageContext) -> None:
    """Write the measured hour, the next hours and a store holding the previous day."""
    _hour_file(ctx, START, HOUR_FILE)
    hour = pd.Timedelta(seconds=STEPS * STEP_SECONDS)
    for i in range(APPEND_REPEATS):
        _hour_file(ctx, START + (i + 1) * hour, _next_hour_name(i))
    history = _settings(ctx, HISTORY_HOME)
    for i in range(HOURS_PER_DAY):
        path = _hour_file(ctx, START - (HOURS_PER_DAY - i) * hour, "fleet-history.parquet")
        _ingest(history, path)


def measure(ctx: StageContext) -> dict[str, Any]:
    """Time pyarrow's read and our ingest of the same file, then appends with history."""
    hour_file = _path(ctx, HOUR_FILE)
    history = _settings(ctx, HISTORY_HOME, clear=False)
    peer_times, our_times, rows = [], [], 0
    for repeat in range(REPEATS):
        started = time.perf_counter()
        table = pq.read_table(hour_file)
        peer_times.append(time.perf_counter() - started)
        rows = table.num_rows
        del table

        elapsed, written = _ingest(_settings(ctx, f"fresh-{repeat}"), hour_file)
        if written != rows:
            raise RuntimeError(f"ingest wrote {written} of {rows} rows of {hour_file}")
        our_times.append(elapsed)

    append_times = [
        _ingest(history, _path(ctx, _next_hour_name(i)))[0] for i in range(APPEND_REPEATS)
    ]

    wall_s = statistics.median(our_times)
    peer_wall_s = statistics.median(peer_times)
    return {
        "wall_s": round(wall_s, 4),
        "rows": rows,
        "rows_per_s": round(rows / wall_s),
        "peer": "pyarrow.parquet.read_table",
        "peer_wall_s": round(peer_wall_s, 4),
        # pyarrow time / our time: our speed as a fraction of pyarrow's (target >= 0.30).
        "ratio": round(peer_wall_s / wall_s, 3),
        "speed_fraction_of_pyarrow": round(peer_wall_s / wall_s, 3),
        "append_with_history_wall_s": round(statistics.median(append_times), 4),
        "history_rows": ctx.components * METRICS * STEPS * HOURS_PER_DAY,
        "repeats": REPEATS,
    }
