"""Build a large risk store for the API benchmarks: many components, hourly scores.

The rows are generated inside SQLite by one ``INSERT ... SELECT`` over two recursive
sequences (components and hours), in (component, scored_at) order, so the build runs in
C and appends to the indexes in key order. The tables themselves are created by
:class:`predictor.store.RiskStore`, so the benchmark reads the schema the product uses.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import time
from pathlib import Path

from predictor.store import RiskStore

#: Cadence of the generated scores. Hourly keeps 10,000 components x 30 days at 7.2
#: million rows; a 5-minute cadence would be 86 million rows and a 20 GB file.
STEP_SECONDS = 3600

GROUPS = 8


def component_name(index: int) -> str:
    """Return the name of generated component ``index`` (``gpu-node-00000`` onwards)."""
    return f"gpu-node-{index:05d}"


def build_store(path: Path, components: int, days: int, *, end: dt.datetime) -> int:
    """Write ``components`` x ``days`` of hourly scores ending at ``end`` into ``path``.

    Returns the number of rows written. Risk values are pseudo-random in [0, 1), and the
    level follows the sample configuration's thresholds (0.5, 0.7, 0.85).
    """
    if path.exists():
        raise FileExistsError(f"benchmark store {str(path)!r} exists; remove it or pick another")
    RiskStore(f"sqlite:///{path}").close()
    steps = days * 24 * 3600 // STEP_SECONDS
    first = (end - dt.timedelta(seconds=STEP_SECONDS * (steps - 1))).replace(tzinfo=None)
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute(
            f"""
            WITH RECURSIVE
              c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < {components}),
              h(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM h WHERE j + 1 < {steps}),
              r AS (
                SELECT i, j, (abs(random()) % 1000000) / 1000000.0 AS risk FROM c, h
              )
            INSERT INTO scores (
              component, group_name, scored_at, risk, raw_risk, anomaly_score,
              forecast_probability, time_to_threshold_seconds, level, previous_level,
              pending_level, pending_count, drivers, model_version, calibrated, stale,
              created_at
            )
            SELECT
              printf('gpu-node-%05d', i),
              printf('pool-%d', i % {GROUPS}),
              strftime('%Y-%m-%d %H:%M:%f000', ?, printf('+%d seconds', j * {STEP_SECONDS})),
              risk, risk, risk, risk / 2,
              CASE WHEN risk > 0.7 THEN 1800.0 + 60 * (i % 60) ELSE NULL END,
              CASE WHEN risk >= 0.85 THEN 'critical' WHEN risk >= 0.7 THEN 'high'
                   WHEN risk >= 0.5 THEN 'elevated' ELSE 'normal' END,
              NULL, NULL, 0,
              '[{{"contribution": 0.6, "metric": "gpu_temp_celsius"}}, '
              || '{{"contribution": 0.4, "metric": "ecc_errors"}}]',
              '7', 0, 0,
              strftime('%Y-%m-%d %H:%M:%f000', ?, printf('+%d seconds', j * {STEP_SECONDS} + 30))
            FROM r ORDER BY i, j
            """,
            (first.isoformat(sep=" "), first.isoformat(sep=" ")),
        )
        connection.commit()
        (count,) = connection.execute("SELECT count(*) FROM scores").fetchone()
        connection.execute("PRAGMA journal_mode=WAL")
    finally:
        connection.close()
    return int(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="SQLite file to create")
    parser.add_argument("--components", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    args = parser.parse_args()
    started = time.perf_counter()
    end = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    rows = build_store(args.path, args.components, args.days, end=end)
    print(f"{rows} rows in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
