"""Compaction merges each completed day's part files into one without changing any row.

The rows replay the shipped SMD sample through the benchmark's fleet generator: 6
components x 20 metrics at 5-minute steps from 2026-03-01T22:00Z for 30 hours, appended
one step at a time like the ingest DAG's appends. The store then contains 358 part files
over three UTC days. One append crosses midnight, so its transaction has a part file on
each of two days.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.fleet import generate_fleet
from predictor.cli import main
from predictor.telemetry import TelemetryStore
from predictor.telemetry import store as store_module
from predictor.telemetry.store import ROW_GROUP_ROWS
from predictor.telemetry.store_compact import CompactionError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data"
COMPONENTS = 6
STEPS = 360
START = "2026-03-01T22:00:00Z"
# A day ends here that the fleet's last rows (2026-03-03T03:55Z) do not reach.
AFTER_DAY_TWO = "2026-03-03T00:00:00Z"


@pytest.fixture(scope="module")
def fleet_rows() -> pd.DataFrame:
    rows = generate_fleet(COMPONENTS, steps=STEPS, data_dir=SAMPLE, start=START).rows
    return rows.astype({"component": str, "metric": str})


@pytest.fixture(scope="module")
def appended_store(fleet_rows: pd.DataFrame, tmp_path_factory) -> Path:
    """A store built by one append per 5-minute step, plus one append across midnight."""
    root = tmp_path_factory.mktemp("appended") / "telemetry"
    store = TelemetryStore(root)
    times = fleet_rows["timestamp"]
    steps = sorted(times.unique())
    midnight = pd.Timestamp("2026-03-02T00:00:00Z")
    straddle = (times >= midnight - pd.Timedelta(minutes=10)) & (
        times < midnight + pd.Timedelta(minutes=10)
    )
    store.append(fleet_rows.loc[straddle])
    for step in steps:
        at_step = (times == step) & ~straddle
        if at_step.any():
            store.append(fleet_rows.loc[at_step])
    return root


@pytest.fixture
def store_root(appended_store: Path, tmp_path: Path) -> Path:
    root = tmp_path / "telemetry"
    shutil.copytree(appended_store, root)
    return root


def _part_files(root: Path, date: str) -> list[Path]:
    return sorted((root / f"date={date}").glob("part-*.parquet"))


def _markers(root: Path) -> list[Path]:
    return [path for path in (root / "_commits").iterdir() if not path.name.startswith(".")]


def _assert_same_rows(root: Path, expected: pd.DataFrame) -> None:
    store = TelemetryStore(root)
    pd.testing.assert_frame_equal(store.read(), expected)
    assert store.components() == sorted(expected["component"].unique())
    for name, rows in expected.groupby("component"):
        assert store.last_timestamp(name) == rows["timestamp"].max()


def test_compact_merges_completed_days(store_root: Path):
    before = TelemetryStore(store_root).read()
    markers_before = len(_markers(store_root))

    compacted = TelemetryStore(store_root).compact(before=AFTER_DAY_TWO)

    assert [day.date for day in compacted] == ["2026-03-01", "2026-03-02"]
    assert [day.rows for day in compacted] == [
        int((before["timestamp"].dt.strftime("%Y-%m-%d") == day.date).sum())
        for day in compacted
    ]
    assert len(_part_files(store_root, "2026-03-01")) == 1
    assert len(_part_files(store_root, "2026-03-02")) == 1
    assert len(_part_files(store_root, "2026-03-03")) == 48
    assert len(_markers(store_root)) == 2 + 48
    assert markers_before == 1 + 24 - 2 + 288 - 2 + 48
    _assert_same_rows(store_root, before)


def test_compact_merges_hours_of_day_not_ended(store_root: Path):
    before = TelemetryStore(store_root).read()

    compacted = TelemetryStore(store_root).compact(before="2026-03-02T12:10:00Z")

    assert [(day.date, day.hour) for day in compacted] == [("2026-03-01", None)] + [
        ("2026-03-02", f"{hour:02d}:00") for hour in range(12)
    ]
    # Twelve hourly files, then the 5-minute appends from 12:00 on.
    assert len(_part_files(store_root, "2026-03-02")) == 12 + 144
    _assert_same_rows(store_root, before)


def test_compact_again_changes_nothing(store_root: Path):
    TelemetryStore(store_root).compact(before=AFTER_DAY_TWO)
    files = sorted(path.name for path in store_root.rglob("*"))

    assert TelemetryStore(store_root).compact(before=AFTER_DAY_TWO) == []
    assert sorted(path.name for path in store_root.rglob("*")) == files


def test_compact_merges_late_rows(store_root: Path, fleet_rows: pd.DataFrame):
    store = TelemetryStore(store_root)
    store.compact(before=AFTER_DAY_TWO)
    late = fleet_rows.loc[fleet_rows["timestamp"] == pd.Timestamp("2026-03-02T12:00Z")].copy()
    late["component"] = "late-arrival"
    store.append(late)
    expected = TelemetryStore(store_root).read()

    compacted = store.compact(before=AFTER_DAY_TWO)

    assert [(day.date, day.files) for day in compacted] == [("2026-03-02", 2)]
    assert len(_part_files(store_root, "2026-03-02")) == 1
    _assert_same_rows(store_root, expected)


def test_compacted_rows_still_deduplicate(store_root: Path, fleet_rows: pd.DataFrame):
    store = TelemetryStore(store_root)
    store.compact(before=AFTER_DAY_TWO)
    day_one = fleet_rows.loc[fleet_rows["timestamp"] < pd.Timestamp("2026-03-02T00:00Z")]

    result = store.append(day_one)

    assert result.written == 0
    assert result.duplicates == len(day_one)


def test_compact_writes_row_group_per_block(store_root: Path):
    before = TelemetryStore(store_root).read()

    TelemetryStore(store_root).compact(before=AFTER_DAY_TWO, block=pd.Timedelta(minutes=30))

    _assert_same_rows(store_root, before)
    merged = pq.ParquetFile(_part_files(store_root, "2026-03-02")[0])
    times = merged.schema_arrow.get_field_index("timestamp")
    assert merged.num_row_groups == 48
    for index in range(merged.num_row_groups):
        group = merged.metadata.row_group(index)
        statistics = group.column(times).statistics
        assert group.num_rows <= ROW_GROUP_ROWS
        assert statistics.max - statistics.min < pd.Timedelta(minutes=30)


def test_open_reader_sees_compacted_rows(store_root: Path):
    reader = TelemetryStore(store_root)
    before = reader.read()

    TelemetryStore(store_root).compact(before=AFTER_DAY_TWO)

    pd.testing.assert_frame_equal(reader.read(), before)
    assert reader.components() == sorted(before["component"].unique())


def test_reader_retries_files_compacted_meanwhile(store_root: Path, monkeypatch):
    reader = TelemetryStore(store_root)
    before = reader.read()
    listed = reader._fleet_files
    calls = {"n": 0}

    def list_then_compact(*args, **kwargs):
        files = listed(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 1:
            # Another process compacts between this listing and the read of the files.
            TelemetryStore(store_root).compact(before=AFTER_DAY_TWO)
        return files

    monkeypatch.setattr(reader, "_fleet_files", list_then_compact)

    pd.testing.assert_frame_equal(reader.read(), before)
    assert calls["n"] == 2


def test_crash_before_deleting_replaced(store_root: Path, monkeypatch):
    before = TelemetryStore(store_root).read()

    def fail(*args, **kwargs):
        raise OSError("disk went away")

    with monkeypatch.context() as patch:
        patch.setattr(store_module, "delete_replaced", fail)
        with pytest.raises(OSError, match="disk went away"):
            TelemetryStore(store_root).compact(before=AFTER_DAY_TWO)

    # The first day was committed; its replaced files are still there and ignored.
    assert len(_part_files(store_root, "2026-03-01")) > 1
    _assert_same_rows(store_root, before)
    compacted = TelemetryStore(store_root).compact(before=AFTER_DAY_TWO)
    assert [day.date for day in compacted] == ["2026-03-02"]
    assert len(_part_files(store_root, "2026-03-01")) == 1
    _assert_same_rows(store_root, before)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from predictor.telemetry import TelemetryStore
    from predictor.telemetry import store as store_module

    root, point = sys.argv[1], sys.argv[2]

    def kill_after(original):
        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapper

    def kill_before(original):
        def wrapper(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)
        return wrapper

    if point == "after_merged_file":
        store_module.write_merged_file = kill_after(store_module.write_merged_file)
    elif point == "before_commit":
        store_module.TelemetryStore._commit = kill_before(store_module.TelemetryStore._commit)
    elif point == "after_commit":
        store_module.TelemetryStore._commit = kill_after(store_module.TelemetryStore._commit)
    TelemetryStore(root).compact(before="2026-03-03T00:00:00Z")
    """
)


@pytest.mark.parametrize("point", ["after_merged_file", "before_commit", "after_commit"])
def test_killed_compaction_keeps_rows(store_root: Path, point: str):
    before = TelemetryStore(store_root).read()
    environment = {**os.environ, "PYTHONPATH": str(REPO)}

    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(store_root), point],
        env=environment, capture_output=True, text=True, timeout=120, check=False,
    )

    assert killed.returncode == -9, killed.stderr
    _assert_same_rows(store_root, before)
    TelemetryStore(store_root).compact(before=AFTER_DAY_TWO)
    assert len(_part_files(store_root, "2026-03-01")) == 1
    assert len(_part_files(store_root, "2026-03-02")) == 1
    assert not list(store_root.rglob(".*.tmp"))
    _assert_same_rows(store_root, before)


def test_repeated_key_leaves_day(store_root: Path):
    # A copy of a committed transaction under a new id: two files with the same keys.
    summaries = (pq.read_table(marker) for marker in sorted(_markers(store_root)))
    summary = next(
        table for table in summaries
        if set(table.column("file").to_pylist()) == {table.column("file")[0].as_py()}
        and table.column("file")[0].as_py().startswith("date=2026-03-02/")
    )
    source_file = summary.column("file")[0].as_py()
    copy_id = "f" * 32
    copy_name = f"part-{copy_id}-{'e' * 32}.parquet"
    copy_file = Path(source_file).with_name(copy_name).as_posix()
    shutil.copy(store_root / source_file, store_root / copy_file)
    files = [copy_file if name == source_file else name
             for name in summary.column("file").to_pylist()]
    summary = summary.set_column(summary.schema.get_field_index("file"), "file",
                                 pa.array(files, pa.string()))
    pq.write_table(summary, store_root / "_commits" / copy_id)
    date = Path(source_file).parent.name.removeprefix("date=")
    files_before = _part_files(store_root, date)

    with pytest.raises(CompactionError, match="repeat a \\(component, metric, timestamp\\) key"):
        TelemetryStore(store_root).compact(before=AFTER_DAY_TWO)

    assert _part_files(store_root, date) == files_before


def test_cli_compact_prints_days(store_root: Path, tmp_path: Path, capsys, monkeypatch):
    home = store_root.parent
    config = tmp_path / "predictor.toml"
    config.write_text("", encoding="utf-8")
    monkeypatch.setenv("PREDICTOR_HOME", str(home))

    code = main(["--config", str(config), "compact", "--before", AFTER_DAY_TWO])

    output = capsys.readouterr().out
    assert code == 0
    assert "2026-03-01" in output
    assert "2026-03-02" in output
    assert len(_part_files(store_root, "2026-03-02")) == 1


@pytest.mark.parametrize(
    ("before", "message"),
    [
        ("yesterday-ish", "invalid time 'yesterday-ish'; expected ISO 8601"),
        ("2026-03-03", "time '2026-03-03' has no UTC offset; add 'Z' or '+00:00'"),
    ],
)
def test_cli_compact_rejects_bad_time(before, message, tmp_path: Path, capsys, monkeypatch):
    config = tmp_path / "predictor.toml"
    config.write_text("", encoding="utf-8")
    monkeypatch.setenv("PREDICTOR_HOME", str(tmp_path / "home"))

    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), "compact", "--before", before])

    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert exited.value.code == 2
    assert error.startswith("predictor compact: error: argument --before: ")
    assert message in error


def test_cli_compact_far_future(store_root: Path, tmp_path: Path, capsys, monkeypatch):
    config = tmp_path / "predictor.toml"
    config.write_text("", encoding="utf-8")
    monkeypatch.setenv("PREDICTOR_HOME", str(store_root.parent))

    code = main(["--config", str(config), "compact", "--before", "2300-01-01T00:00Z"])

    assert code == 0
    assert "2026-03-03" in capsys.readouterr().out
    assert len(_part_files(store_root, "2026-03-03")) == 1
