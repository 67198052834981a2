"""Ingest: accounting, idempotence, quarantine, validation and the train/replay split."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pandas as pd
import pytest

from predictor.config import SourceConfig
from predictor.telemetry import (
    AccountingError,
    TelemetryStore,
    ingest_source,
    read_source,
    split_time,
    validate,
)
from predictor.telemetry.long_parquet import read_clean_long_parquet
from predictor.telemetry.store import REASON_CONFLICT
from predictor.telemetry.validate import (
    REASON_INVALID_METRIC,
    REASON_UNKNOWN_COMPONENT,
    REASON_UNKNOWN_METRIC,
)

CASES = Path(__file__).resolve().parent.parent / "cases"


def _accounted(summary) -> int:
    return summary.written + summary.quarantined + summary.duplicates


def _nab_source(path: Path, **options) -> SourceConfig:
    return SourceConfig(name="nab-temp", format="nab", path=path,
                        component="machine-temperature", metric="temperature", **options)


def test_reingest_adds_no_rows(nab_slice, make_settings):
    settings = make_settings()
    store = TelemetryStore(settings.telemetry_dir)
    first = ingest_source(_nab_source(nab_slice), settings, store)
    second = ingest_source(_nab_source(nab_slice), settings, store)

    assert first.rows_read == 300
    assert first.written == 300
    assert _accounted(first) == first.rows_read
    assert second.written == 0
    assert second.duplicates == 300
    assert _accounted(second) == second.rows_read
    assert len(store.read()) == 300
    assert first.quarantine_file is None
    assert first.first_timestamp == pd.Timestamp("2013-12-02T21:15:00Z")
    assert first.components == ["machine-temperature"]


def test_default_store_under_home(nab_slice, make_settings):
    settings = make_settings()
    summary = ingest_source(_nab_source(nab_slice), settings)

    assert summary.written == 300
    assert TelemetryStore(settings.telemetry_dir).components() == ["machine-temperature"]


def test_bad_rows_quarantined_with_reason(tmp_path, make_settings):
    settings = make_settings(components=[
        {"name": "gpu-1", "metrics": ["temp", "power"]},
        {"name": "gpu-2"},
    ])
    path = tmp_path / "long.csv"
    path.write_text(
        "timestamp,component,metric,value\n"
        "2026-06-01T00:00:00Z,gpu-1,temp,61.5\n"
        "2026-06-01T00:00:00Z,gpu-1,power,300\n"
        "2026-06-01T00:01:00Z,gpu-1,temp,warm\n"
        "yesterday,gpu-1,temp,60\n"
        "2026-06-01T00:02:00Z,gpu-9,temp,60\n"
        "2026-06-01T00:03:00Z,gpu-1,fan,1200\n"
        "2026-06-01T00:04:00Z,gpu-2,any_metric,1\n"
        "2026-06-01T00:05:00Z,gpu-2,bad/name,1\n"
    )
    source = SourceConfig(name="fleet", format="long", path=path)
    summary = ingest_source(source, settings)
    quarantine = pd.read_csv(summary.quarantine_file, dtype=str)

    assert summary.rows_read == 8
    assert summary.written == 3
    assert summary.quarantined == 5
    assert _accounted(summary) == summary.rows_read
    assert summary.quarantine_file.parent == settings.quarantine_dir
    assert summary.quarantine_file.name.startswith("fleet-")
    assert list(quarantine.columns) == [
        "source_row", "timestamp", "component", "metric", "raw_value", "reason",
    ]
    by_row = quarantine.set_index("source_row")
    assert by_row.loc["4", "reason"] == "non-numeric value"
    assert by_row.loc["4", "raw_value"] == "warm"
    assert by_row.loc["5", "reason"] == "invalid timestamp"
    assert by_row.loc["5", "raw_value"] == "yesterday"
    assert by_row.loc["6", "reason"] == REASON_UNKNOWN_COMPONENT
    assert by_row.loc["6", "raw_value"] == "gpu-9"
    assert by_row.loc["7", "reason"] == REASON_UNKNOWN_METRIC
    assert by_row.loc["9", "reason"] == REASON_INVALID_METRIC
    assert summary.reasons == {
        "non-numeric value": 1, "invalid timestamp": 1, REASON_UNKNOWN_COMPONENT: 1,
        REASON_UNKNOWN_METRIC: 1, REASON_INVALID_METRIC: 1,
    }


def test_duplicate_and_conflicting_rows(make_settings):
    settings = make_settings()
    source = SourceConfig(name="r04", format="wide", path=CASES / "R04-duplicate-timestamps.csv",
                          timestamp_column="ts", metric_names=("power_w",))
    store = TelemetryStore(settings.telemetry_dir)
    first = ingest_source(source, settings, store)
    second = ingest_source(source, settings, store)
    at_0055 = store.read(start="2026-06-01T00:55Z", end="2026-06-01T00:55Z")
    quarantine = pd.read_csv(first.quarantine_file)

    # 27 rows: two exact re-sends of 872.2 and one different value from collector-b.
    assert (first.rows_read, first.written, first.duplicates, first.quarantined) == (27, 24, 2, 1)
    assert quarantine["raw_value"].tolist() == [909.7]
    assert quarantine["reason"].tolist() == [REASON_CONFLICT]
    assert at_0055["value"].tolist() == [872.2]
    assert (second.written, second.duplicates, second.quarantined) == (0, 26, 1)
    assert len(store.read()) == 24


def test_nab_repeated_timestamps_conflict(sample_data, make_settings):
    """The NAB EC2 latency file repeats 03:00 twelve times on 2014-03-09 (a US clock change)."""
    path = sample_data / "nab" / "realKnownCause" / "ec2_request_latency_system_failure.csv"
    source = SourceConfig(name="ec2", format="nab", path=path, component="ec2-request-latency",
                          metric="latency_ms")
    summary = ingest_source(source, make_settings())
    quarantine = pd.read_csv(summary.quarantine_file)

    assert summary.rows_read == 4032
    assert summary.reasons == {REASON_CONFLICT: 11}
    assert set(quarantine["timestamp"]) == {"2014-03-09T03:00:00.000000Z"}
    assert quarantine["source_row"].tolist() == list(range(559, 570))
    assert _accounted(summary) == summary.rows_read


def test_implausible_epochs_quarantined(make_settings):
    source = SourceConfig(name="r03", format="wide", path=CASES / "R03-mixed-epoch-units.csv",
                          timestamp_column="ts_epoch", epoch_unit="ms")
    summary = ingest_source(source, make_settings())

    assert summary.written == 54
    assert summary.reasons == {
        "implausible epoch timestamp (before 2000-01-01 or in the future)": 6
    }
    assert _accounted(summary) == summary.rows_read


def test_ingest_logs_one_info_line(nab_slice, make_settings, caplog):
    with caplog.at_level(logging.INFO, logger="predictor.telemetry"):
        ingest_source(_nab_source(nab_slice), make_settings())

    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert len(lines) == 1
    assert "ingest nab-temp" in lines[0]
    assert "300 rows read, 300 written, 0 quarantined, 0 duplicates" in lines[0]


def test_lost_rows_raise_accounting_error(nab_slice, make_settings):
    class LossyStore(TelemetryStore):
        """A store with a bug: it drops the last row without counting it."""

        def append(self, rows, before_commit=None):
            return super().append(rows.iloc[:-1], before_commit=before_commit)

    settings = make_settings()
    with pytest.raises(AccountingError, match=r"= 299, but 300 rows were read"):
        ingest_source(_nab_source(nab_slice), settings, LossyStore(settings.telemetry_dir))


@pytest.mark.slow
def test_smd_machine_reingest_idempotent(sample_data, make_settings):
    source = SourceConfig(
        name="smd-1-2-test", format="matrix", path=sample_data / "smd/test/machine-1-2.txt.gz",
        component="smd-machine-1-2", metric_names_path=sample_data / "smd/metric_names.txt",
        start="2024-01-01T00:00:00Z", step_seconds=60, row_offset=23694,
    )
    settings = make_settings()
    store = TelemetryStore(settings.telemetry_dir)
    first = ingest_source(source, settings, store)
    second = ingest_source(source, settings, store)

    assert first.rows_read == 23694 * 38
    assert first.written == first.rows_read
    assert second.duplicates == first.rows_read
    assert second.written == 0
    assert store.last_timestamp("smd-machine-1-2") == pd.Timestamp(
        "2024-01-01T00:00:00Z"
    ) + pd.Timedelta(minutes=2 * 23694 - 1)


# --- validate -------------------------------------------------------------------------


def test_validate_accepts_any_name_without_components(make_settings):
    rows = pd.DataFrame({
        "timestamp": pd.to_datetime(["2026-06-01", "2026-06-01", "2026-06-01"], utc=True),
        "component": ["a", "", "c"],
        "metric": ["m", "m", "m"],
        "value": [1.0, 2.0, float("nan")],
    })
    good, bad = validate(rows, make_settings())

    assert good["component"].tolist() == ["a"]
    assert bad["reason"].tolist() == ["invalid component name", "missing or non-finite value"]
    assert bad["raw_value"].tolist() == ["", "nan"]


# --- split_time -----------------------------------------------------------------------


def test_split_time_by_fraction(nab_slice):
    source = _nab_source(nab_slice, role="split", train_fraction=0.15)
    rows = read_source(source).rows
    ordered = rows.sort_values("timestamp")["timestamp"]

    split = split_time(source, rows)
    assert split == ordered.iloc[math.floor(0.15 * 300)]
    assert (rows["timestamp"] < split).sum() == 45


def test_split_time_capped_by_max_rows(nab_slice):
    source = _nab_source(nab_slice, role="split", train_fraction=0.5, max_train_rows=20)
    rows = read_source(source).rows

    assert (rows["timestamp"] < split_time(source, rows)).sum() == 20


def test_split_time_train_and_replay(nab_slice):
    rows = read_source(_nab_source(nab_slice)).rows
    train = split_time(_nab_source(nab_slice, role="train"), rows)

    assert train == rows["timestamp"].max() + pd.Timedelta(1, unit="ns")
    assert (rows["timestamp"] < train).all()
    assert split_time(_nab_source(nab_slice, role="replay"), rows) is None


def test_long_parquet_fast_path_matches_csv(tmp_path, make_settings):
    rows = pd.DataFrame({
        "timestamp": pd.to_datetime(
            ["2026-06-01T00:01Z", "2026-06-01T00:00Z", "2026-06-01T00:00Z", "2026-06-01T00:00Z"]
        ),
        "component": ["gpu-2", "gpu-1", "gpu-1", "gpu-1"],
        "metric": ["temp", "temp", "temp", "power"],
        "value": [61.0, 60.0, 65.0, 300.0],
    })
    parquet, csv = tmp_path / "fleet.parquet", tmp_path / "fleet.csv"
    rows.to_parquet(parquet, index=False)
    rows.assign(timestamp=rows["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")).to_csv(
        csv, index=False
    )
    settings = make_settings()
    assert read_clean_long_parquet(SourceConfig(name="p", format="long", path=parquet),
                                   settings) is not None
    from_parquet = ingest_source(SourceConfig(name="p", format="long", path=parquet), settings,
                                 TelemetryStore(tmp_path / "p"))
    from_csv = ingest_source(SourceConfig(name="c", format="long", path=csv), settings,
                             TelemetryStore(tmp_path / "c"))

    counts = ("rows_read", "written", "quarantined", "duplicates", "components",
              "first_timestamp", "last_timestamp", "reasons")
    assert [getattr(from_parquet, k) for k in counts] == [getattr(from_csv, k) for k in counts]
    assert from_parquet.reasons == {REASON_CONFLICT: 1}
    quarantine = pd.read_csv(from_parquet.quarantine_file)
    assert quarantine["source_row"].tolist() == [3]
    pd.testing.assert_frame_equal(TelemetryStore(tmp_path / "p").read(),
                                  TelemetryStore(tmp_path / "c").read())
