"""Adoption of clean long Parquet files in store order as part files.

Fleet rows replay the shipped SMD sample through the benchmark's fleet generator. Every
test compares the store an ingest builds with a store that the same rows reach through
:meth:`TelemetryStore.append`, which always rewrites them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.fleet import generate_fleet
from predictor.config import SourceConfig
from predictor.telemetry import TelemetryStore, ingest_source, store_adopt
from predictor.telemetry.long_parquet import read_clean_long_file
from predictor.telemetry.store import REASON_CONFLICT

SAMPLE = Path(__file__).resolve().parents[2] / "data"
COMPONENTS = 12
STEPS = 12
START = "2026-03-02T00:00:00Z"


@pytest.fixture(scope="module")
def fleet_rows() -> pd.DataFrame:
    """One hour of 12 components x 20 metrics, ordered by component, timestamp, metric."""
    return generate_fleet(COMPONENTS, steps=STEPS, data_dir=SAMPLE, start=START).rows


def _written_store(rows: pd.DataFrame, root: Path) -> TelemetryStore:
    store = TelemetryStore(root)
    store.append(rows.astype({"component": str, "metric": str}))
    return store


def _ingest(path: Path, settings, root: Path):
    store = TelemetryStore(root)
    return ingest_source(SourceConfig(name="fleet", format="long", path=path), settings, store)


def _adopted(root: Path, path: Path) -> bool:
    """Return whether a part file in the store holds exactly the bytes of ``path``."""
    content = path.read_bytes()
    return any(part.read_bytes() == content for part in root.glob("date=*/part-*.parquet"))


def _assert_same_store(root: Path, expected: TelemetryStore) -> None:
    store = TelemetryStore(root)
    pd.testing.assert_frame_equal(store.read(), expected.read())
    assert store.components() == expected.components()
    for name in expected.components():
        assert store.last_timestamp(name) == expected.last_timestamp(name)


def test_fleet_file_adopted_reads_as_written(fleet_rows, tmp_path, make_settings):
    path = tmp_path / "fleet.parquet"
    fleet_rows.to_parquet(path, index=False)
    expected = _written_store(fleet_rows, tmp_path / "written")

    summary = _ingest(path, make_settings(), tmp_path / "adopted")

    assert _adopted(tmp_path / "adopted", path)
    assert (summary.written, summary.duplicates, summary.quarantined) == (len(fleet_rows), 0, 0)
    assert summary.components == sorted(fleet_rows["component"].astype(str).unique())
    _assert_same_store(tmp_path / "adopted", expected)
    some = ["gpu-node-00003", "gpu-node-00007"]
    pd.testing.assert_frame_equal(
        TelemetryStore(tmp_path / "adopted").read(components=some, metrics=["m05"]),
        expected.read(components=some, metrics=["m05"]),
    )


def test_metric_major_strings_adopted(fleet_rows, tmp_path, make_settings):
    """pandas string columns and microsecond times, sorted as the store writes them."""
    rows = fleet_rows.astype({"component": str, "metric": str})
    rows = rows.sort_values(["component", "metric", "timestamp"], ignore_index=True)
    rows["timestamp"] = rows["timestamp"].astype("datetime64[us, UTC]")
    path = tmp_path / "fleet.parquet"
    rows.to_parquet(path, index=False)

    summary = _ingest(path, make_settings(), tmp_path / "adopted")

    assert _adopted(tmp_path / "adopted", path)
    assert summary.written == len(rows)
    _assert_same_store(tmp_path / "adopted", _written_store(fleet_rows, tmp_path / "written"))


def test_unsorted_file_rewritten(fleet_rows, tmp_path, make_settings):
    shuffled = fleet_rows.sample(frac=1.0, random_state=3).reset_index(drop=True)
    path = tmp_path / "fleet.parquet"
    shuffled.to_parquet(path, index=False)

    summary = _ingest(path, make_settings(), tmp_path / "store")

    assert not _adopted(tmp_path / "store", path)
    assert summary.written == len(fleet_rows)
    _assert_same_store(tmp_path / "store", _written_store(fleet_rows, tmp_path / "written"))


def test_repeated_keys_deduplicated(fleet_rows, tmp_path, make_settings):
    """A sorted file with an exact repeat and a conflicting repeat is not adopted."""
    repeat = fleet_rows.iloc[[5]]
    conflict = fleet_rows.iloc[[40]].assign(value=fleet_rows["value"].iloc[40] + 1.0)
    rows = pd.concat([fleet_rows.iloc[:6], repeat, fleet_rows.iloc[6:41], conflict,
                      fleet_rows.iloc[41:]], ignore_index=True)
    path = tmp_path / "fleet.parquet"
    rows.to_parquet(path, index=False)

    summary = _ingest(path, make_settings(), tmp_path / "store")

    assert not _adopted(tmp_path / "store", path)
    assert (summary.written, summary.duplicates, summary.quarantined) == (len(fleet_rows), 1, 1)
    assert summary.reasons == {REASON_CONFLICT: 1}
    assert pd.read_csv(summary.quarantine_file)["source_row"].tolist() == [43]
    _assert_same_store(tmp_path / "store", _written_store(fleet_rows, tmp_path / "written"))


def test_two_day_file_split_per_day(tmp_path, make_settings):
    rows = generate_fleet(3, steps=STEPS, data_dir=SAMPLE, start="2026-03-02T23:30:00Z").rows
    path = tmp_path / "fleet.parquet"
    rows.to_parquet(path, index=False)

    summary = _ingest(path, make_settings(), tmp_path / "store")

    assert not _adopted(tmp_path / "store", path)
    assert summary.written == len(rows)
    folders = sorted(p.name for p in (tmp_path / "store").glob("date=*"))
    assert folders == ["date=2026-03-02", "date=2026-03-03"]
    _assert_same_store(tmp_path / "store", _written_store(rows, tmp_path / "written"))


def test_overlapping_reingest_deduplicated(fleet_rows, tmp_path, make_settings):
    settings = make_settings()
    first_half = fleet_rows.loc[fleet_rows["timestamp"] < fleet_rows["timestamp"].iloc[0]
                                + pd.Timedelta(minutes=30)]
    first, whole = tmp_path / "first.parquet", tmp_path / "whole.parquet"
    first_half.to_parquet(first, index=False)
    fleet_rows.to_parquet(whole, index=False)
    root = tmp_path / "store"

    assert _ingest(first, settings, root).written == len(first_half)
    again = _ingest(whole, settings, root)
    repeated = _ingest(whole, settings, root)

    assert _adopted(root, first)
    assert not _adopted(root, whole)
    assert (again.written, again.duplicates) == (len(fleet_rows) - len(first_half),
                                                 len(first_half))
    assert (repeated.written, repeated.duplicates) == (0, len(fleet_rows))
    _assert_same_store(root, _written_store(fleet_rows, tmp_path / "written"))


def test_extra_column_rewritten(fleet_rows, tmp_path, make_settings):
    path = tmp_path / "fleet.parquet"
    fleet_rows.assign(unit="ratio").to_parquet(path, index=False)

    _ingest(path, make_settings(), tmp_path / "store")

    assert not _adopted(tmp_path / "store", path)
    _assert_same_store(tmp_path / "store", _written_store(fleet_rows, tmp_path / "written"))


def test_large_row_groups_rewritten(fleet_rows, tmp_path, make_settings, monkeypatch):
    path = tmp_path / "fleet.parquet"
    pq.write_table(pa.Table.from_pandas(fleet_rows, preserve_index=False), path,
                   row_group_size=len(fleet_rows))
    monkeypatch.setattr(store_adopt, "MAX_ADOPTED_ROW_GROUP_ROWS", len(fleet_rows) - 1)

    _ingest(path, make_settings(), tmp_path / "store")

    assert not _adopted(tmp_path / "store", path)
    _assert_same_store(tmp_path / "store", _written_store(fleet_rows, tmp_path / "written"))


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        (["component", "timestamp", "metric"], store_adopt.TIME_MAJOR),
        (["component", "metric", "timestamp"], store_adopt.METRIC_MAJOR),
        (["timestamp", "component", "metric"], None),
        (["metric", "component", "timestamp"], None),
    ],
)
def test_store_order_detected(fleet_rows, tmp_path, make_settings, order, expected):
    rows = fleet_rows.astype({"component": str, "metric": str})
    path = tmp_path / "fleet.parquet"
    rows.sort_values(order, ignore_index=True).to_parquet(path, index=False)
    clean = read_clean_long_file(SourceConfig(name="f", format="long", path=path),
                                 make_settings())

    adoptable = store_adopt.adoptable_file(clean.content, clean.file_schema,
                                           clean.metadata, clean.rows)
    summary = adoptable.summary

    if expected is None:
        assert summary is None
        return
    assert summary.column("component").to_pylist() == sorted(rows["component"].unique())
    assert summary.column("rows").to_pylist() == [STEPS * 20] * COMPONENTS
    by_component = rows.groupby("component")["timestamp"]
    assert summary.column("first_timestamp").to_pylist() == by_component.min().tolist()
    assert summary.column("last_timestamp").to_pylist() == by_component.max().tolist()


def test_block_boundary_order_checked(fleet_rows, monkeypatch):
    """A swap of two rows across a block boundary is found."""
    monkeypatch.setattr(store_adopt, "ORDER_CHECK_BLOCK", 16)
    components = np.repeat(np.arange(3), 20)
    metrics = np.zeros(60, dtype=np.int64)
    nanoseconds = np.tile(np.arange(20, dtype=np.int64), 3) + 10**18
    assert store_adopt._store_order(components, metrics, nanoseconds, 10**18) is not None

    nanoseconds[[16, 17]] = nanoseconds[[17, 16]]
    assert store_adopt._store_order(components, metrics, nanoseconds, 10**18) is None
