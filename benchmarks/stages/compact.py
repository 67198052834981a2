"""Compaction of a day of 5-minute appends, and what it saves readers.

``prepare`` builds a telemetry store that contains one UTC day of ``ctx.components``
components x 20 metrics from the fleet generator, appended one 5-minute step at a
time as the ingest DAG appends it: 288 part files and 288 commit markers. ``measure``
copies that store (untimed), then times on the copy:

- opening it: ``components()`` on a new store object, which reads every marker, and
  a read of the day's last hour of every component, as a scoring run reads it;
- :meth:`predictor.telemetry.TelemetryStore.compact` of the day (``wall_s``);
- the same opening and read on a new store object after the compaction.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.fleet import generate_fleet
from benchmarks.stages import StageContext
from predictor.telemetry import TelemetryStore

METRICS = 20
STEP_SECONDS = 300
STEPS_PER_HOUR = 12
HOURS = 24
DAY = pd.Timestamp("2026-03-02T00:00:00Z")
PREPARED = "day-of-appends"
COPY = "compacted"


def _root(ctx: StageContext, name: str) -> Path:
    return Path(ctx.workdir) / "compact" / name / "telemetry"


def prepare(ctx: StageContext) -> None:
    """Append a day of the fleet to a new store, one 5-minute step per append."""
    root = _root(ctx, PREPARED)
    shutil.rmtree(root.parent, ignore_errors=True)
    store = TelemetryStore(root)
    hour = pd.Timedelta(seconds=STEPS_PER_HOUR * STEP_SECONDS)
    for index in range(HOURS):
        fleet = generate_fleet(
            ctx.components, steps=STEPS_PER_HOUR, data_dir=ctx.data_dir, metrics=METRICS,
            step_seconds=STEP_SECONDS, start=(DAY + index * hour).isoformat(),
        )
        rows = fleet.rows
        for _, step in rows.groupby("timestamp", sort=True):
            store.append(step)


def _open_and_read(root: Path) -> tuple[float, float, int]:
    """Time ``components()`` and a read of the last hour on a new store object."""
    started = time.perf_counter()
    store = TelemetryStore(root)
    components = store.components()
    opened = time.perf_counter() - started

    last_hour = DAY + pd.Timedelta(hours=HOURS - 1)
    started = time.perf_counter()
    rows = store.read_table(start=last_hour).num_rows
    read = time.perf_counter() - started
    if len(components) == 0 or rows == 0:
        raise RuntimeError(f"no rows of the last hour found in the store at {root}")
    return opened, read, rows


def _files(root: Path) -> tuple[int, int]:
    parts = len(list(root.glob("date=*/part-*.parquet")))
    markers = len([p for p in (root / "_commits").iterdir() if not p.name.startswith(".")])
    return parts, markers


def measure(ctx: StageContext) -> dict[str, Any]:
    """Compact a copy of the prepared store and time readers before and after."""
    copy = _root(ctx, COPY)
    shutil.rmtree(copy.parent, ignore_errors=True)
    shutil.copytree(_root(ctx, PREPARED), copy)
    parts_before, markers_before = _files(copy)
    open_before, read_before, rows_read = _open_and_read(copy)

    started = time.perf_counter()
    compacted = TelemetryStore(copy).compact(before=DAY + pd.Timedelta(days=1))
    wall_s = time.perf_counter() - started

    parts_after, markers_after = _files(copy)
    open_after, read_after, rows_after = _open_and_read(copy)
    if rows_after != rows_read or len(compacted) != 1:
        raise RuntimeError(
            f"compaction of {copy} changed the last hour ({rows_read} rows before, "
            f"{rows_after} after) or compacted {len(compacted)} days instead of 1"
        )
    rows = compacted[0].rows
    shutil.rmtree(copy.parent, ignore_errors=True)
    return {
        "wall_s": round(wall_s, 3),
        "rows": rows,
        "rows_per_s": round(rows / wall_s),
        "part_files_before": parts_before,
        "part_files_after": parts_after,
        "markers_before": markers_before,
        "markers_after": markers_after,
        "open_s_before": round(open_before, 4),
        "open_s_after": round(open_after, 4),
        "read_last_hour_s_before": round(read_before, 4),
        "read_last_hour_s_after": round(read_after, 4),
        "last_hour_rows": rows_read,
    }
