"""An ingest killed with SIGKILL at any point leaves the telemetry store as it was.

Each test runs a real ingest in a subprocess that sends itself SIGKILL at a chosen point
(after some of its 15 part files, one per new day, are in place, while writing the
quarantine file, just before the commit), then checks that the store reads exactly what
it read before. The same points are checked for a Parquet file that the store adopts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from predictor.config import SourceConfig, load_settings
from predictor.telemetry import TelemetryStore, ingest_source

REPO = Path(__file__).resolve().parents[2]

# Runs one ingest and kills itself at POINT; COUNT selects which call of the wrapped
# function triggers it.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from predictor.config import SourceConfig, load_settings
    from predictor.telemetry import ingest_source
    from predictor.telemetry import ingest as ingest_module
    from predictor.telemetry import store as store_module

    config, data, point, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    calls = {"n": 0}

    def kill_on(original, before):
        def wrapper(*args, **kwargs):
            calls["n"] += 1
            if before and calls["n"] == count:
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if not before and calls["n"] == count:
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return wrapper

    if point == "after_part_file":
        store_module._write_atomically = kill_on(store_module._write_atomically, False)
    elif point == "writing_quarantine":
        ingest_module._write_quarantine = kill_on(ingest_module._write_quarantine, True)
    elif point == "before_commit":
        store_module.TelemetryStore._commit = kill_on(store_module.TelemetryStore._commit, True)
    elif point == "after_commit":
        store_module.TelemetryStore._commit = kill_on(store_module.TelemetryStore._commit, False)
    settings = load_settings(config)
    source = SourceConfig(name="fleet", format="long", path=data)
    ingest_source(source, settings)
    """
)


def _telemetry(days: int) -> pd.DataFrame:
    """Hourly rows of two components over ``days`` days, one partition per day each."""
    times = pd.date_range("2026-10-01T00:00Z", periods=days * 24, freq="h")
    frames = []
    for offset, component in enumerate(["gpu-1", "gpu-2"]):
        frames.append(
            pd.DataFrame(
                {
                    "timestamp": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "component": component,
                    "metric": "gpu_temp_celsius",
                    "value": [60.0 + offset + (i % 17) for i in range(len(times))],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def base_store(tmp_path):
    """A store holding the first 5 days, and a file with 20 days and one bad row."""
    home = tmp_path / "home"
    config = tmp_path / "predictor.toml"
    config.write_text("", encoding="utf-8")
    settings = load_settings(config, environ={"PREDICTOR_HOME": str(home)})

    base = tmp_path / "base.csv"
    _telemetry(5).to_csv(base, index=False)
    ingest_source(SourceConfig(name="base", format="long", path=base), settings)

    full = _telemetry(20)
    full.loc[len(full)] = ["2026-10-02T00:00:00Z", "gpu-1", "gpu_temp_celsius", "hot"]
    data = tmp_path / "full.csv"
    full.to_csv(data, index=False)
    return settings, config, data


def _run_killed(config: Path, data: Path, home: Path, point: str, count: int) -> int:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("PREDICTOR_")}
    environment.update(PYTHONPATH=str(REPO), PREDICTOR_HOME=str(home))
    completed = subprocess.run(
        [sys.executable, "-c", KILLER, str(config), str(data), point, str(count)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return completed.returncode


def _snapshot(settings) -> pd.DataFrame:
    return TelemetryStore(settings.telemetry_dir).read()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "count"),
    [
        ("after_part_file", 1),
        ("after_part_file", 8),
        ("after_part_file", 15),
        ("writing_quarantine", 1),
        ("before_commit", 1),
    ],
)
def test_killed_ingest_leaves_store_unchanged(base_store, point, count):
    settings, config, data = base_store
    store = TelemetryStore(settings.telemetry_dir)
    before = _snapshot(settings)
    components_before = store.components()
    last_before = store.last_timestamp("gpu-2")

    returncode = _run_killed(config, data, settings.home, point, count)

    assert returncode == -signal.SIGKILL
    pd.testing.assert_frame_equal(_snapshot(settings), before)
    assert store.components() == components_before
    assert store.last_timestamp("gpu-2") == last_before

    # The next ingest removes the leftovers and stores the whole file once.
    summary = ingest_source(SourceConfig(name="fleet", format="long", path=data), settings)
    assert (summary.written, summary.duplicates, summary.quarantined) == (
        2 * 15 * 24,
        2 * 5 * 24,
        1,
    )
    assert len(_snapshot(settings)) == 2 * 20 * 24
    assert not list(settings.telemetry_dir.rglob("*.tmp"))


@pytest.mark.slow
def test_kill_after_commit_keeps_ingest(base_store):
    """The control: once the commit marker is in place, the ingest is stored."""
    settings, config, data = base_store

    returncode = _run_killed(config, data, settings.home, "after_commit", 1)

    assert returncode == -signal.SIGKILL
    assert len(_snapshot(settings)) == 2 * 20 * 24


@pytest.fixture
def adoptable_day(base_store, tmp_path):
    """A Parquet file of the sixth day of both components, in store order."""
    times = pd.date_range("2026-10-06T00:00Z", periods=24, freq="h")
    rows = pd.concat(
        [
            pd.DataFrame({"timestamp": times, "component": component,
                          "metric": "gpu_temp_celsius", "value": 70.0 + offset})
            for offset, component in enumerate(["gpu-1", "gpu-2"])
        ],
        ignore_index=True,
    ).astype({"timestamp": "datetime64[ns, UTC]"})
    path = tmp_path / "day6.parquet"
    rows.to_parquet(path, index=False)
    return path


def _adopted(settings, path: Path) -> bool:
    content = path.read_bytes()
    parts = settings.telemetry_dir.glob("date=*/part-*.parquet")
    return any(part.read_bytes() == content for part in parts)


@pytest.mark.slow
@pytest.mark.parametrize(
    "point", ["after_part_file", "writing_quarantine", "before_commit"]
)
def test_killed_adoption_leaves_store_unchanged(base_store, adoptable_day, point):
    settings, config, _ = base_store
    before = _snapshot(settings)

    returncode = _run_killed(config, adoptable_day, settings.home, point, 1)

    assert returncode == -signal.SIGKILL
    pd.testing.assert_frame_equal(_snapshot(settings), before)
    assert TelemetryStore(settings.telemetry_dir).last_timestamp("gpu-1") == pd.Timestamp(
        "2026-10-05T23:00Z"
    )

    # The next ingest removes the leftovers and adopts the file.
    summary = ingest_source(SourceConfig(name="day6", format="long", path=adoptable_day),
                            settings)
    assert (summary.written, summary.duplicates, summary.quarantined) == (48, 0, 0)
    assert _adopted(settings, adoptable_day)
    assert len(_snapshot(settings)) == len(before) + 48
    assert not list(settings.telemetry_dir.rglob("*.tmp"))


@pytest.mark.slow
def test_adoption_killed_after_commit_kept(base_store, adoptable_day):
    settings, config, _ = base_store
    before = len(_snapshot(settings))

    returncode = _run_killed(config, adoptable_day, settings.home, "after_commit", 1)

    assert returncode == -signal.SIGKILL
    assert _adopted(settings, adoptable_day)
    assert len(_snapshot(settings)) == before + 48
