"""TelemetryStore: partitioned Parquet, idempotent appends, conflicts, atomic files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from predictor.telemetry import TelemetryStore
from predictor.telemetry.store import REASON_CONFLICT


def _rows(times: list[str], component: str = "gpu-1", metric: str = "temp",
          values: list[float] | None = None) -> pd.DataFrame:
    return pd.DataFrame({
        "timestamp": pd.to_datetime(times, utc=True),
        "component": component,
        "metric": metric,
        "value": values if values is not None else [float(i) for i in range(len(times))],
    })


def _part_files(root: Path) -> list[Path]:
    return sorted(root.glob("date=*/part-*.parquet"))


def test_append_read_round_trip(tmp_path):
    store = TelemetryStore(tmp_path / "telemetry")
    rows = pd.concat([
        _rows(["2026-06-01T00:01Z", "2026-06-01T00:00Z"], metric="temp", values=[2.0, 1.0]),
        _rows(["2026-06-01T00:00Z"], metric="power", values=[300.0]),
        _rows(["2026-06-01T00:00Z"], component="cpu-1", values=[5.5]),
    ])
    result = store.append(rows)
    stored = store.read()

    assert result.written == 4
    assert result.duplicates == 0
    assert result.conflicts.empty
    assert list(stored.columns) == ["timestamp", "component", "metric", "value"]
    assert str(stored["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert stored["component"].tolist() == ["cpu-1", "gpu-1", "gpu-1", "gpu-1"]
    assert stored["metric"].tolist() == ["temp", "power", "temp", "temp"]
    assert stored["value"].tolist() == [5.5, 300.0, 1.0, 2.0]


def test_layout_one_file_per_append_and_day(tmp_path):
    store = TelemetryStore(tmp_path)
    store.append(pd.concat([
        _rows(["2026-06-01T23:59Z", "2026-06-02T00:00Z"], component="node@rack:7"),
        _rows(["2026-06-01T23:58Z"], component="gpu-2"),
    ]))

    files = [f.relative_to(tmp_path).as_posix() for f in _part_files(tmp_path)]
    assert [f.rpartition("/")[0] for f in files] == ["date=2026-06-01", "date=2026-06-02"]
    first_day = pq.read_table(tmp_path / files[0])
    assert first_day.column_names == ["component", "metric", "timestamp", "value"]
    assert first_day.column("component").to_pylist() == ["gpu-2", "node@rack:7"]
    # Other tools read the same layout with hive partitioning; _commits is skipped.
    table = ds.dataset(tmp_path, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 3
    assert set(table.column("component").to_pylist()) == {"node@rack:7", "gpu-2"}
    assert store.components() == ["gpu-2", "node@rack:7"]


def test_reappend_adds_no_rows(tmp_path):
    store = TelemetryStore(tmp_path)
    rows = _rows([f"2026-06-01T00:{m:02d}Z" for m in range(10)])
    store.append(rows)
    files_before = _part_files(tmp_path)
    again = store.append(rows)

    assert again.written == 0
    assert again.duplicates == 10
    assert again.conflicts.empty
    assert len(store.read()) == 10
    assert _part_files(tmp_path) == files_before


def test_repeats_within_input_counted(tmp_path):
    store = TelemetryStore(tmp_path)
    rows = _rows(["2026-06-01T00:00Z"] * 3 + ["2026-06-01T00:01Z"], values=[1.0, 1.0, 1.0, 2.0])
    result = store.append(rows)

    assert result.written == 2
    assert result.duplicates == 2
    assert len(store.read()) == 2


def test_stored_value_wins_conflict(tmp_path):
    store = TelemetryStore(tmp_path)
    store.append(_rows(["2026-06-01T00:00Z", "2026-06-01T00:01Z"], values=[1.0, 2.0]))
    later = _rows(["2026-06-01T00:00Z", "2026-06-01T00:02Z"], values=[9.0, 3.0])
    later["source_row"] = [7, 8]
    result = store.append(later)

    assert result.written == 1
    assert result.duplicates == 0
    assert result.conflicts["source_row"].tolist() == [7]
    assert result.conflicts["value"].tolist() == [9.0]
    assert result.conflicts["kept_value"].tolist() == [1.0]
    assert result.conflicts["reason"].tolist() == [REASON_CONFLICT]
    assert store.read()["value"].tolist() == [1.0, 2.0, 3.0]


def test_first_value_in_input_wins_conflict(tmp_path):
    store = TelemetryStore(tmp_path)
    rows = _rows(["2026-06-01T00:00Z"] * 3, values=[5.0, 6.0, 5.0])
    result = store.append(rows)

    assert result.written == 1
    assert result.duplicates == 1
    assert result.conflicts["value"].tolist() == [6.0]
    assert result.conflicts["kept_value"].tolist() == [5.0]
    assert store.read()["value"].tolist() == [5.0]


def test_read_filters_are_inclusive(tmp_path):
    store = TelemetryStore(tmp_path)
    times = ["2026-06-01T23:00Z", "2026-06-02T00:00Z", "2026-06-02T01:00Z", "2026-06-03T00:00Z"]
    store.append(pd.concat([
        _rows(times, component="a", metric="x"),
        _rows(times, component="a", metric="y"),
        _rows(times, component="b", metric="x"),
    ]))
    selected = store.read(components=["a"], metrics=["x"], start="2026-06-02T00:00Z",
                          end=pd.Timestamp("2026-06-02T01:00Z"))

    assert selected["timestamp"].tolist() == pd.to_datetime(times[1:3], utc=True).tolist()
    assert set(selected["component"]) == {"a"}
    assert set(selected["metric"]) == {"x"}
    assert store.read(components=["missing"]).empty
    # A bound without a timezone is UTC.
    assert len(store.read(start="2026-06-03 00:00")) == 3


def test_last_timestamp_and_components(tmp_path):
    store = TelemetryStore(tmp_path)
    assert store.components() == []
    assert store.last_timestamp("a") is None

    store.append(_rows(["2026-06-01T05:00Z", "2026-06-03T07:30Z"], component="a"))
    store.append(_rows(["2026-06-02T00:00Z"], component="b"))

    assert store.components() == ["a", "b"]
    assert store.last_timestamp("a") == pd.Timestamp("2026-06-03T07:30Z")
    assert store.last_timestamp("b") == pd.Timestamp("2026-06-02T00:00Z")
    assert store.last_timestamp("c") is None
    assert store.last_timestamps(["c", "b", "a", "b"]) == {
        "a": pd.Timestamp("2026-06-03T07:30Z"),
        "b": pd.Timestamp("2026-06-02T00:00Z"),
        "c": None,
    }


def test_naive_timestamps_rejected(tmp_path):
    rows = _rows(["2026-06-01T00:00Z"])
    rows["timestamp"] = rows["timestamp"].dt.tz_localize(None)
    with pytest.raises(TypeError, match="'timestamp' must be timezone-aware"):
        TelemetryStore(tmp_path).append(rows)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    store = TelemetryStore(tmp_path)
    store.append(_rows(["2026-06-01T00:00Z"]))

    def fail_rename(source, target):
        raise OSError(f"disk full while renaming {source} to {target}")

    monkeypatch.setattr("predictor.telemetry.store.os.replace", fail_rename)
    with pytest.raises(OSError, match="disk full"):
        store.append(_rows(["2026-06-01T00:05Z"], values=[8.0]))

    assert len(_part_files(tmp_path)) == 1
    assert not list(tmp_path.rglob("*.tmp"))
    assert store.read()["value"].tolist() == [0.0]


def test_partial_temporary_file_ignored(tmp_path):
    store = TelemetryStore(tmp_path)
    store.append(_rows(["2026-06-01T00:00Z"]))
    partition = _part_files(tmp_path)[0].parent
    # What a process killed mid-write leaves behind: a truncated, hidden file.
    (partition / ".part-deadbeef.parquet.tmp").write_bytes(b"PAR1\x00\x01")

    assert store.read()["value"].tolist() == [0.0]
    assert store.append(_rows(["2026-06-01T00:00Z"])).duplicates == 1
    assert store.last_timestamp("gpu-1") == pd.Timestamp("2026-06-01T00:00Z")


def _write_legacy_partition(root: Path, component: str, times: list[str],
                            values: list[float]) -> None:
    """Write a part file in the per-component layout that older stores used."""
    folder = root / f"component={component}" / f"date={times[0][:10]}"
    folder.mkdir(parents=True)
    table = pa.table({
        "timestamp": pa.array(pd.to_datetime(times, utc=True), pa.timestamp("ns", tz="UTC")),
        "metric": ["temp"] * len(times),
        "value": values,
    })
    pq.write_table(table, folder / "part-0123456789abcdef0123456789abcdef.parquet")


def test_store_with_both_layouts(tmp_path):
    _write_legacy_partition(tmp_path, "old-1", ["2026-06-01T00:00Z", "2026-06-01T00:01Z"],
                            [1.0, 2.0])
    store = TelemetryStore(tmp_path)
    result = store.append(pd.concat([
        _rows(["2026-06-01T00:01Z", "2026-06-01T00:02Z"], component="old-1", values=[2.0, 3.0]),
        _rows(["2026-06-01T00:00Z"], component="new-1", values=[7.0]),
    ]))

    assert (result.written, result.duplicates) == (2, 1)
    stored = store.read()
    assert stored["component"].tolist() == ["new-1", "old-1", "old-1", "old-1"]
    assert stored["value"].tolist() == [7.0, 1.0, 2.0, 3.0]
    assert store.components() == ["new-1", "old-1"]
    assert store.last_timestamp("old-1") == pd.Timestamp("2026-06-01T00:02Z")
    assert store.last_timestamps(["old-1", "new-1"]) == {
        "new-1": pd.Timestamp("2026-06-01T00:00Z"),
        "old-1": pd.Timestamp("2026-06-01T00:02Z"),
    }
    assert store.read(components=["old-1"], end="2026-06-01T00:00Z")["value"].tolist() == [1.0]


def test_read_table_types_and_order(tmp_path):
    store = TelemetryStore(tmp_path)
    store.append(_rows(["2026-06-01T00:01Z"], component="b", values=[1.0]))
    store.append(_rows(["2026-06-01T00:00Z", "2026-06-01T00:02Z"], component="a"))
    table = store.read_table(start="2026-06-01T00:00Z", end="2026-06-01T00:01Z")

    assert table.column_names == ["timestamp", "component", "metric", "value"]
    assert pa.types.is_dictionary(table.schema.field("component").type)
    assert pa.types.is_dictionary(table.schema.field("metric").type)
    assert table.column("component").to_pylist() == ["a", "b"]
    assert table.column("value").to_pylist() == [0.0, 1.0]


def test_row_groups_skipped_for_one_component(tmp_path, monkeypatch):
    monkeypatch.setattr("predictor.telemetry.store.ROW_GROUP_ROWS", 10)
    store = TelemetryStore(tmp_path)
    store.append(pd.concat(
        [_rows([f"2026-06-01T00:{m:02d}Z" for m in range(10)], component=f"c{i:02d}")
         for i in range(20)]
    ))
    fragment = next(ds.dataset(_part_files(tmp_path), format="parquet").get_fragments())

    assert fragment.num_row_groups == 20
    assert fragment.subset(filter=ds.field("component") == "c07").num_row_groups == 1
    assert store.read(components=["c07"])["component"].unique().tolist() == ["c07"]


def test_newer_rows_read_no_part_file(tmp_path, monkeypatch):
    store = TelemetryStore(tmp_path)
    store.append(_rows(["2026-06-01T00:00Z", "2026-06-01T00:01Z"]))
    opened = []
    original = TelemetryStore._read_fleet

    def recording(self, files, condition):
        opened.extend(files)
        return original(self, files, condition)

    monkeypatch.setattr(TelemetryStore, "_read_fleet", recording)
    newer = store.append(_rows(["2026-06-01T00:02Z"], values=[5.0]))
    assert newer.written == 1
    assert opened == []

    overlapping = store.append(_rows(["2026-06-01T00:01Z"], values=[1.0]))
    assert overlapping.duplicates == 1
    assert len(opened) == 1


def test_components_and_last_timestamp_read_markers_only(tmp_path):
    store = TelemetryStore(tmp_path)
    store.append(_rows(["2026-06-01T00:00Z", "2026-06-02T05:00Z"], component="a"))
    for path in _part_files(tmp_path):
        path.write_bytes(b"not parquet")

    fresh = TelemetryStore(tmp_path)
    assert fresh.components() == ["a"]
    assert fresh.last_timestamp("a") == pd.Timestamp("2026-06-02T05:00Z")
