"""Readers: every format on real slices, and the timestamp and number traps."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictor.config import SourceConfig
from predictor.exceptions import ConfigError, InputError
from predictor.telemetry import read_source
from predictor.telemetry.readers import (
    REASON_BAD_TIMESTAMP,
    REASON_IMPLAUSIBLE_EPOCH,
    REASON_NON_FINITE,
    REASON_NON_NUMERIC,
    REASON_NONEXISTENT_LOCAL,
)

CASES = Path(__file__).resolve().parent.parent / "cases"

def _source(path: Path, fmt: str, **options) -> SourceConfig:
    return SourceConfig(name="test-source", format=fmt, path=path, **options)


# --- formats on real data -------------------------------------------------------------


def test_nab_slice_reads_as_utc(nab_slice):
    raw = read_source(_source(nab_slice, "nab", component="machine-temperature",
                              metric="temperature"))
    expected = pd.read_csv(nab_slice)

    assert raw.rows_read == 300
    assert raw.rejected.empty
    assert str(raw.rows["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert raw.rows["timestamp"].iloc[0] == pd.Timestamp("2013-12-02 21:15:00", tz="UTC")
    assert raw.rows["source_row"].tolist() == list(range(2, 302))
    assert set(raw.rows["component"]) == {"machine-temperature"}
    assert set(raw.rows["metric"]) == {"temperature"}
    np.testing.assert_array_equal(raw.rows["value"].to_numpy(), expected["value"].to_numpy())


def test_matrix_slice_row_times_and_order(smd_slice, smd_metric_names):
    names = smd_metric_names.read_text().split()
    source = _source(smd_slice, "matrix", component="smd-machine-1-2",
                     metric_names_path=smd_metric_names, start="2024-01-01T00:00:00Z",
                     step_seconds=60, row_offset=100)
    raw = read_source(source)
    with gzip.open(smd_slice, "rt") as handle:
        matrix = pd.read_csv(handle, header=None).to_numpy()

    assert raw.rows_read == 200 * 38
    assert len(raw.rows) == 200 * 38
    assert raw.rows["metric"].iloc[:38].tolist() == names
    # Row i has the time start + (row_offset + i) * step.
    third_row = raw.rows.loc[raw.rows["source_row"] == 3]
    assert set(third_row["timestamp"]) == {pd.Timestamp("2024-01-01T01:42:00Z")}
    np.testing.assert_array_equal(raw.rows["value"].to_numpy(), matrix.ravel())


def test_matrix_column_count_mismatch(smd_slice):
    source = _source(smd_slice, "matrix", component="m", metric_names=("a", "b"),
                     start="2024-01-01", step_seconds=60)
    with pytest.raises(InputError, match="38 columns but 2 metric names"):
        read_source(source)


def test_matrix_bad_cells_rejected(tmp_path):
    path = tmp_path / "machine.txt"
    path.write_text("0.1,0.2\n0.3,abc\nnan,0.6\n0.7,0.8\n")
    raw = read_source(_source(path, "matrix", component="m", metric_names=("a", "b"),
                              start="2024-01-01", step_seconds=60))

    assert raw.rows_read == 8
    assert len(raw.rows) == 6
    rejected = raw.rejected.set_index(["source_row", "metric"])
    assert rejected.loc[(2, "b"), "reason"] == REASON_NON_NUMERIC
    assert rejected.loc[(2, "b"), "raw_value"] == "abc"
    assert rejected.loc[(3, "a"), "reason"] == REASON_NON_FINITE
    assert raw.rows["value"].tolist() == [0.1, 0.2, 0.3, 0.6, 0.7, 0.8]


def test_long_csv_rows_and_rejects(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text(
        "timestamp,component,metric,value\n"
        "2026-06-01T00:00:00Z,gpu-1,temp,61.5\n"
        "2026-06-01T02:00:00+02:00,gpu-1,temp,62.0\n"
        "\n"
        "not-a-time,gpu-1,temp,63.0\n"
        "2026-06-01T00:02:00Z,gpu-1,temp,hot\n"
        "2026-06-01T00:03:00Z,gpu-2,power,inf\n"
    )
    raw = read_source(_source(path, "long"))

    assert raw.rows_read == 5
    assert raw.rows["source_row"].tolist() == [2, 3]
    # The offset +02:00 is converted, so both rows are the same UTC instant.
    assert raw.rows["timestamp"].nunique() == 1
    reasons = dict(zip(raw.rejected["source_row"], raw.rejected["reason"], strict=True))
    assert reasons == {5: REASON_BAD_TIMESTAMP, 6: REASON_NON_NUMERIC, 7: REASON_NON_FINITE}
    raw_values = dict(zip(raw.rejected["source_row"], raw.rejected["raw_value"], strict=True))
    assert raw_values[5] == "not-a-time"
    assert raw_values[6] == "hot"


def test_long_parquet_round_trip(tmp_path):
    frame = pd.DataFrame({
        "timestamp": pd.date_range("2026-06-01", periods=4, freq="min", tz="UTC"),
        "component": ["a", "a", "b", "b"],
        "metric": ["x", "y", "x", "y"],
        "value": [1.0, 2.0, 3.0, 4.0],
    })
    path = tmp_path / "long.parquet"
    frame.to_parquet(path)
    raw = read_source(_source(path, "long"))

    assert raw.rows["timestamp"].tolist() == frame["timestamp"].tolist()
    assert raw.rows["value"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert raw.rows["source_row"].tolist() == [1, 2, 3, 4]


def test_wide_parquet_component_column(tmp_path):
    frame = pd.DataFrame({
        "time": pd.date_range("2026-06-01", periods=3, freq="min", tz="UTC"),
        "host": ["n1", "n2", "n1"],
        "cpu": [0.1, 0.2, 0.3],
        "mem": [10, 20, 30],
    })
    path = tmp_path / "wide.pq"
    frame.to_parquet(path)
    raw = read_source(_source(path, "wide", timestamp_column="time", component_column="host"))

    assert raw.rows_read == 6
    assert raw.rows["component"].tolist() == ["n1", "n1", "n2", "n2", "n1", "n1"]
    assert raw.rows["metric"].tolist() == ["cpu", "mem"] * 3
    assert raw.rows["value"].tolist() == [0.1, 10.0, 0.2, 20.0, 0.3, 30.0]


def test_wide_csv_component_from_file_stem(tmp_path):
    path = tmp_path / "router-7.csv"
    path.write_text("timestamp,rps,errors\n2026-06-01T00:00:00Z,100,1\n")
    raw = read_source(_source(path, "wide"))

    assert set(raw.rows["component"]) == {"router-7"}
    assert raw.rows["metric"].tolist() == ["rps", "errors"]


def test_wide_text_column_needs_metric_names():
    source = _source(CASES / "R04-duplicate-timestamps.csv", "wide", timestamp_column="ts")
    with pytest.raises(InputError, match=r"'writer'.*metric_names"):
        read_source(source)


# --- errors ---------------------------------------------------------------------------


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(InputError, match=r"absent\.csv.*not found"):
        read_source(_source(path, "long"))


def test_missing_column_lists_found(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("timestamp,component,metric,val\n2026-06-01T00:00:00Z,a,b,1\n")
    with pytest.raises(
        InputError,
        match=r"long\.csv, row 1, column 'value': missing column 'value'; found columns "
        r"\['timestamp', 'component', 'metric', 'val'\]",
    ):
        read_source(_source(path, "long"))


@pytest.mark.parametrize("content", ["", "timestamp,value\n"])
def test_empty_file_reads_zero_rows(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_text(content)
    raw = read_source(_source(path, "nab", component="c"))

    assert raw.rows_read == 0
    assert raw.rows.empty
    assert raw.rejected.empty


def test_unknown_epoch_unit_rejected(nab_slice):
    with pytest.raises(ConfigError, match=r"epoch_unit must be one of .* got 'minutes'"):
        read_source(_source(nab_slice, "nab", component="c", epoch_unit="minutes"))


# --- naive local times and daylight saving --------------------------------------------


def _r01(**options) -> SourceConfig:
    return _source(CASES / "R01-dst-naive-local-sorted.csv", "wide",
                   timestamp_column="ts_local", **options)


def test_naive_local_times_need_timezone():
    with pytest.raises(InputError, match=r"no UTC offset.*set timezone"):
        read_source(_r01())


def test_repeated_hour_needs_order_column():
    with pytest.raises(InputError, match=r"8 local times fall in the repeated hour.*order_column"):
        read_source(_r01(timezone="Europe/Berlin"))


def test_repeated_hour_localised_in_true_order():
    raw = read_source(_r01(timezone="Europe/Berlin", order_column="seq"))
    frame = pd.read_csv(CASES / "R01-dst-naive-local-sorted.csv")
    rows = raw.rows.assign(seq=frame["seq"].to_numpy()).sort_values("seq")

    # In true order the readings are every 15 minutes without a gap or a repeat.
    steps = rows["timestamp"].diff().dropna().unique()
    assert list(steps) == [pd.Timedelta(minutes=15)]
    assert rows["timestamp"].iloc[0] == pd.Timestamp("2026-10-24T22:00:00Z")
    assert set(rows["metric"]) == {"cpu_util"}
    # seq 8 is 02:00 summer time and seq 12 is 02:00 winter time, an hour later in UTC.
    at = rows.set_index("seq")["timestamp"]
    assert at[12] - at[8] == pd.Timedelta(hours=1)


def test_spring_gap_time_rejected(tmp_path):
    path = tmp_path / "spring.csv"
    path.write_text(
        "ts,component,temp\n2026-03-29 01:30:00,n1,1\n2026-03-29 02:30:00,n1,2\n"
        "2026-03-29 03:30:00,n1,3\n"
    )
    raw = read_source(_source(path, "wide", timestamp_column="ts", timezone="Europe/Berlin"))

    assert raw.rejected["reason"].tolist() == [REASON_NONEXISTENT_LOCAL]
    assert raw.rejected["raw_value"].tolist() == ["2026-03-29 02:30:00"]
    assert raw.rows["timestamp"].tolist() == [
        pd.Timestamp("2026-03-29T00:30:00Z"), pd.Timestamp("2026-03-29T01:30:00Z"),
    ]


# --- epochs ---------------------------------------------------------------------------


def _r03(**options) -> SourceConfig:
    return _source(CASES / "R03-mixed-epoch-units.csv", "wide", timestamp_column="ts_epoch",
                   **options)


def test_mixed_epoch_units_inferred_per_value():
    raw = read_source(_r03())

    assert raw.rejected.empty
    times = raw.rows.sort_values("source_row")["timestamp"]
    # One reading a minute; microsecond values keep their sub-second part.
    assert times.diff().dropna().dt.round("s").unique().tolist() == [pd.Timedelta(minutes=1)]
    assert times.min().year == 2026
    assert raw.rows.loc[raw.rows["source_row"] == 19, "timestamp"].iloc[0] == pd.Timestamp(
        1793001020000282, unit="us", tz="UTC"
    )


def test_declared_epoch_unit_quarantines_implausible():
    raw = read_source(_r03(epoch_unit="ms"))

    # Three microsecond values land far in the future, three second values in 1970.
    assert len(raw.rejected) == 6
    assert set(raw.rejected["reason"]) == {REASON_IMPLAUSIBLE_EPOCH}
    assert "1793001740" in set(raw.rejected["raw_value"])
    assert len(raw.rows) == 54
    assert raw.rows["timestamp"].min() >= pd.Timestamp("2026-01-01", tz="UTC")


def test_epoch_before_2000_rejected(tmp_path):
    path = tmp_path / "epochs.csv"
    path.write_text("ts,component,v\n0,a,1\n86400,a,2\n1793000000,a,3\n")
    raw = read_source(_source(path, "wide", timestamp_column="ts"))

    assert raw.rejected["raw_value"].tolist() == ["0", "86400"]
    assert raw.rows["timestamp"].tolist() == [pd.Timestamp(1793000000, unit="s", tz="UTC")]


# --- number formats -------------------------------------------------------------------


def _r05(**options) -> SourceConfig:
    return _source(CASES / "R05-thousands-separators.csv", "wide", timestamp_column="ts",
                   **options)


def test_undeclared_thousands_separator_raises():
    with pytest.raises(InputError, match=r"'requests_per_min'.*'1,010'.*thousands = \",\""):
        read_source(_r05())


def test_declared_thousands_separator_keeps_big_values():
    raw = read_source(_r05(thousands=","))
    text = pd.read_csv(CASES / "R05-thousands-separators.csv", dtype=str)["requests_per_min"]
    expected = text.str.replace(",", "").astype(float).to_numpy()

    assert raw.rejected.empty
    np.testing.assert_array_equal(raw.rows["value"].to_numpy(), expected)
    assert (raw.rows["value"] >= 1000).sum() == (text.str.contains(",")).sum()


def test_decimal_comma_with_dot_thousands(tmp_path):
    path = tmp_path / "eu.csv"
    path.write_text('ts,component,v\n2026-06-01T00:00Z,a,"1.234,5"\n2026-06-01T00:01Z,a,"12,5"\n'
                    "2026-06-01T00:02Z,a,1.5\n")
    raw = read_source(_source(path, "wide", timestamp_column="ts", decimal=",", thousands="."))

    assert raw.rows["value"].tolist() == [1234.5, 12.5]
    # "1.5" has a dot but no thousands group, so it is neither format: rejected, not 1.5.
    assert raw.rejected["raw_value"].tolist() == ["1.5"]
    assert raw.rejected["reason"].tolist() == [REASON_NON_NUMERIC]


def test_long_repeated_hour_per_series(tmp_path):
    frame = pd.read_csv(CASES / "R01-dst-naive-local-sorted.csv")
    long = pd.concat([
        frame.assign(metric="cpu_util", value=frame["cpu_util"]),
        frame.assign(metric="mem_util", value=frame["cpu_util"] / 2),
    ]).rename(columns={"ts_local": "timestamp"})
    # Shuffled lines: only the order column tells the two passes of 02:00 apart.
    columns = ["timestamp", "component", "metric", "value", "seq"]
    long = long[columns].sample(frac=1, random_state=0)
    path = tmp_path / "long.csv"
    long.to_csv(path, index=False)
    raw = read_source(_source(path, "long", timezone="Europe/Berlin", order_column="seq"))
    rows = raw.rows.assign(seq=long["seq"].to_numpy()[raw.rows["source_row"] - 2])

    assert raw.rows_read == 48
    for metric in ("cpu_util", "mem_util"):
        series = rows.loc[rows["metric"] == metric].sort_values("seq")["timestamp"]
        assert series.diff().dropna().unique().tolist() == [pd.Timedelta(minutes=15)]
