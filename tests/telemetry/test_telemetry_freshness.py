"""Stale and missing telemetry on real SMD data: unknown with the reason, never normal."""

from __future__ import annotations

import gzip
from pathlib import Path

import pandas as pd
import pytest

from predictor import pipeline
from predictor.config import load_settings
from predictor.report import risk_table
from predictor.telemetry.freshness import stale_reasons

METRICS = ["cpu_r", "load_1", "load_5", "mem_u"]
START = pd.Timestamp("2026-11-01T00:00:00Z")
STEP = pd.Timedelta(minutes=1)
N_TRAIN = 1200
# The key metric cpu_r stops at row 1400 and returns at row 1500.
GAP_START, GAP_END = 1400, 1500
N_ROWS = 1700

CONFIG = """
[model]
members = ["iforest", "robust_z"]
n_estimators = 30
step_seconds = 60

[levels]
stale_after_steps = 3

[[components]]
name = "smd-1-2"
group = "smd"

[[thresholds]]
metric = "cpu_r"
value = 0.95

[[sources]]
name = "train"
format = "long"
path = "train.csv"
role = "train"
"""


def _smd_rows(sample_data: Path) -> pd.DataFrame:
    """The first N_ROWS rows of the real SMD machine-1-2 test file, four metrics, long."""
    names = (sample_data / "smd" / "metric_names.txt").read_text().split()
    with gzip.open(sample_data / "smd" / "test" / "machine-1-2.txt.gz", "rt") as handle:
        matrix = pd.read_csv(handle, header=None, names=names, nrows=N_ROWS)
    matrix["timestamp"] = START + STEP * matrix.index
    matrix["row"] = matrix.index
    long = matrix.melt(id_vars=["timestamp", "row"], value_vars=METRICS, var_name="metric")
    long["component"] = "smd-1-2"
    return long.sort_values(["row", "metric"], kind="stable")


def _write(rows: pd.DataFrame, path: Path) -> Path:
    out = rows[["timestamp", "component", "metric", "value"]].copy()
    out["timestamp"] = out["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    out.to_csv(path, index=False)
    return path


@pytest.fixture
def trained(sample_data, tmp_path, isolated_env):
    rows = _smd_rows(sample_data)
    _write(rows[rows["row"] < N_TRAIN], tmp_path / "train.csv")
    config = tmp_path / "predictor.toml"
    config.write_text(CONFIG, encoding="utf-8")
    settings = load_settings(config)
    pipeline.ingest(settings)
    pipeline.train(settings)
    return settings, rows


def _ingest(settings, rows: pd.DataFrame, path: Path) -> None:
    source = settings.sources[0].__class__(name=path.stem, format="long", path=_write(rows, path))
    pipeline.ingest(settings, [source])


@pytest.mark.slow
def test_missing_key_metric_then_silence(trained, tmp_path):
    settings, rows = trained
    replay = rows[(rows["row"] >= N_TRAIN)]
    without_key = ~((replay["metric"] == "cpu_r") & replay["row"].between(GAP_START, GAP_END - 1))

    # Telemetry arrives up to row 1450 with cpu_r missing since row 1400.
    _ingest(settings, replay[without_key & (replay["row"] < 1450)], tmp_path / "part1.csv")
    pipeline.score(settings, until=START + STEP * 1449)
    store = pipeline.open_risk_store(settings)
    latest = store.last_score("smd-1-2")

    assert latest["level"] == "unknown"
    assert latest["stale"]
    assert latest["drivers"] == [
        {
            "metric": "cpu_r",
            "contribution": 1.0,
            "kind": "stale",
            "reason": "key metric 'cpu_r' has no row for more than 3 minutes",
        }
    ]

    # The rest arrives, cpu_r again from row 1500.
    _ingest(settings, replay[without_key & (replay["row"] >= 1450)], tmp_path / "part2.csv")
    pipeline.score(settings, until=START + STEP * (N_ROWS - 1))
    scores = store.scores(component="smd-1-2").set_index("scored_at")

    fresh_before = scores.loc[: START + STEP * (GAP_START + 2)]
    silent = scores.loc[START + STEP * (GAP_START + 3) : START + STEP * (GAP_END - 1)]
    after = scores.loc[START + STEP * GAP_END :]
    assert (fresh_before["level"] != "unknown").all()
    assert (silent["level"] == "unknown").all()
    assert silent["stale"].all()
    assert len(silent) == GAP_END - GAP_START - 3
    assert all(d[0]["reason"].startswith("key metric 'cpu_r'") for d in silent["drivers"])
    assert len(after) == N_ROWS - GAP_END
    assert set(after["level"]) <= {"normal", "elevated", "high", "critical"}
    assert not after["stale"].any()

    # Then all telemetry stops: one unknown score marks the start of the silence.
    pipeline.score(settings, until=START + STEP * (N_ROWS + 60))
    latest = store.last_score("smd-1-2")
    assert latest["level"] == "unknown"
    assert latest["scored_at"] == START + STEP * (N_ROWS - 1 + 4)
    assert latest["drivers"] == [
        {
            "metric": "*",
            "contribution": 1.0,
            "kind": "stale",
            "reason": "no telemetry for more than 3 minutes",
        }
    ]
    assert "* (stale 1.00)" in risk_table(store)


def test_stale_reasons_name_first_missing_cause():
    stamps = pd.to_datetime(
        ["2026-11-01T00:00Z", "2026-11-01T00:00Z", "2026-11-01T00:04Z"], utc=True
    )
    rows = pd.DataFrame({"timestamp": stamps, "metric": ["temp", "power", "power"]})
    times = pd.date_range("2026-11-01T00:01Z", periods=5, freq="2min")

    reasons = stale_reasons(rows, times, pd.Timedelta(minutes=3), ["temp"])

    # 00:01 and 00:03 are fresh; 00:05 has power from 00:04 but temp is 5 minutes old;
    # at 00:09 every row is older than 3 minutes.
    assert reasons == [
        None,
        None,
        "key metric 'temp' has no row for more than 3 minutes",
        "key metric 'temp' has no row for more than 3 minutes",
        "no telemetry for more than 3 minutes",
    ]
