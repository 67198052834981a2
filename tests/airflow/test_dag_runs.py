"""Run each DAG end to end with dag.test() on the NAB part of the shipped sample.

Each run is repeated for the same logical date, and the telemetry, score and hook-call
tables must then hold exactly what one run left, row for row and column for column.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from predictor.cli import main
from predictor.telemetry import TelemetryStore

pytestmark = pytest.mark.slow

HOOK_LOG = "failover-requests.jsonl"
COMPONENTS = ["ec2-request-latency", "machine-temperature"]
# The registered models of the fleet's two component groups.
TRAINING_MODELS = ["predictor-fleet-nab-ec2", "predictor-fleet-nab-machine"]
# Wall-clock columns of hook actions, which differ between two runs of the same scoring.
HOOK_RUN_COLUMNS = ["id", "called_at", "delivered_at", "next_attempt_at"]


def _telemetry(home: Path) -> pd.DataFrame:
    rows = TelemetryStore(home / "telemetry").read()
    return rows.sort_values(["component", "metric", "timestamp"], ignore_index=True)


def _table(home: Path, name: str) -> pd.DataFrame | None:
    """Return every row of a risk store table, or None before the store exists."""
    if not (home / "risk.db").exists():
        return None
    with sqlite3.connect(home / "risk.db") as connection:
        return pd.read_sql_query(f"SELECT * FROM {name} ORDER BY id", connection)


def _hook_log(home: Path) -> list[str]:
    path = home / HOOK_LOG
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def _snapshot(home: Path) -> dict:
    return {
        "telemetry": _telemetry(home),
        "scores": _table(home, "scores"),
        "hook_calls": _table(home, "hook_calls"),
        "hook_log": _hook_log(home),
    }


def _assert_same(before: dict, after: dict) -> None:
    pd.testing.assert_frame_equal(before["telemetry"], after["telemetry"])
    for table in ("scores", "hook_calls"):
        if before[table] is None:
            assert after[table] is None
        else:
            pd.testing.assert_frame_equal(before[table], after[table])
    assert before["hook_log"] == after["hook_log"]


def _without_run_columns(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Drop the row id and wall-clock columns, which differ between two stores."""
    return (
        frame.drop(columns=columns)
        .sort_values(["component", "scored_at"], ignore_index=True)
        .reset_index(drop=True)
    )


def _shard_result(states: dict, task_id: str) -> list[str]:
    return [state for (name, _), state in sorted(states.items()) if name == task_id]


def test_telemetry_ingest_rerun_adds_nothing(trained_fleet, fleet_home, dag_runner):
    first = dag_runner.states(trained_fleet.ingest_run)
    before = _snapshot(fleet_home)

    rerun = dag_runner.run("telemetry_ingest", trained_fleet.ingest_date)
    after = _snapshot(fleet_home)

    assert str(trained_fleet.ingest_run.state) == "success"
    assert first[("publish_telemetry", -1)] == "success"
    assert first[("compact_telemetry", -1)] == "success"
    assert len(before["telemetry"]) == 26704
    assert sorted(before["telemetry"]["component"].unique()) == COMPONENTS
    assert str(rerun.state) == "success"
    assert dag_runner.states(rerun)[("publish_telemetry", -1)] == "skipped"
    assert dag_runner.states(rerun)[("compact_telemetry", -1)] == "success"
    _assert_same(before, after)


def _registry(settings) -> dict[str, dict]:
    """Return each registered model's version numbers and champion version."""
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    return {
        model.name: {
            "versions": sorted(
                str(v.version) for v in client.search_model_versions(f"name = '{model.name}'")
            ),
            "champion": str(client.get_model_version_by_alias(model.name, "champion").version),
        }
        for model in client.search_registered_models()
    }


def test_model_training_rerun_reuses_model(trained_fleet, fleet_home, dag_runner):
    from predictor.config import load_settings

    first = dag_runner.states(trained_fleet.training_run)
    rerun = dag_runner.run("model_training", trained_fleet.training_date)
    states = dag_runner.states(rerun)
    models = _registry(load_settings())

    assert str(trained_fleet.training_run.state) == "success"
    assert _shard_result(first, "train_group") == ["success", "success"]
    assert first[("report_failed_groups", -1)] == "success"
    assert str(rerun.state) == "success"
    assert _shard_result(states, "train_group") == ["success", "success"]
    assert sorted(models) == TRAINING_MODELS
    for name, model in models.items():
        assert model == {"versions": ["1"], "champion": "1"}, name


def _files_of(home, component):
    """Return the telemetry part files that hold only ``component``, oldest day first.

    Each source is ingested on its own, so its files hold one component.
    """
    files = sorted((home / "telemetry").glob("date=*/part-*.parquet"))
    return [
        path for path in files
        if pq.read_table(path, columns=["component"]).column(0).unique().to_pylist()
        == [component]
    ]


def test_failed_group_reported_others_register(
    trained_fleet, fleet_copy, dag_runner, capfd, monkeypatch
):
    from predictor.config import load_settings

    # Damage the oldest telemetry file of machine-temperature, inside its training part.
    oldest = _files_of(fleet_copy, "machine-temperature")[0]
    oldest.write_bytes(b"not a parquet file")
    # A damaged file fails every retry the same way; without retries the run ends now
    # instead of after the backoff delays.
    monkeypatch.setattr(
        dag_runner.dag_bag.dags["model_training"].task_dict["train_group"], "retries", 0
    )

    run = dag_runner.run("model_training", trained_fleet.training_date + pd.Timedelta(days=1))
    states = dag_runner.states(run)
    models = _registry(load_settings())
    output = capfd.readouterr()

    assert str(run.state) == "failed"
    assert states[("plan_groups", -1)] == "success"
    # Groups are in the sorted order of their components: 0 is ec2-request-latency.
    assert states[("train_group", 0)] == "success"
    assert states[("train_group", 1)] == "failed"
    assert states[("report_failed_groups", -1)] == "failed"
    assert models["predictor-fleet-nab-ec2"]["versions"] == ["1", "2"]
    assert models["predictor-fleet-nab-machine"]["versions"] == ["1"]
    assert (
        "1 of 2 training groups failed: group predictor-fleet-nab-machine "
        "(machine-temperature)" in output.out + output.err
    )


def test_scoring_rerun_and_shards_agree(fleet_copy, tmp_path, dag_runner, monkeypatch):
    import shutil

    one_shard_home = tmp_path / "one-shard"
    shutil.copytree(fleet_copy, one_shard_home)

    run = dag_runner.run("risk_scoring", dag_runner.scoring_date, {"shard_size": 1})
    # A re-run of the same logical date replaces the DagRun, so states are read first.
    states = dag_runner.states(run)
    before = _snapshot(fleet_copy)
    rerun = dag_runner.run("risk_scoring", dag_runner.scoring_date, {"shard_size": 1})
    after = _snapshot(fleet_copy)
    # Shards never mix component groups, and each NAB component is its own group here,
    # so the unsharded reference is one `predictor score` process.
    monkeypatch.setenv("PREDICTOR_HOME", str(one_shard_home))
    single_code = main(["score"])
    unsharded = _snapshot(one_shard_home)

    assert str(run.state) == "success"
    assert _shard_result(states, "score_shard") == ["success", "success"]
    assert sorted(before["scores"]["component"].unique()) == COMPONENTS
    assert len(before["scores"]) > 20000
    # The NAB telemetry ends at 2014-03-21 03:41, the newest row of the fleet.
    assert before["scores"]["scored_at"].max().startswith("2014-03-21 03:40")
    assert len(before["hook_calls"]) > 0
    assert len(before["hook_log"]) == (before["hook_calls"]["status"] == "delivered").sum()

    assert str(rerun.state) == "success"
    _assert_same(before, after)

    assert single_code == 0
    pd.testing.assert_frame_equal(
        _without_run_columns(before["scores"], ["id", "created_at"]),
        _without_run_columns(unsharded["scores"], ["id", "created_at"]),
    )
    pd.testing.assert_frame_equal(
        _without_run_columns(before["hook_calls"], HOOK_RUN_COLUMNS),
        _without_run_columns(unsharded["hook_calls"], HOOK_RUN_COLUMNS),
    )


def test_failed_shard_reported_others_publish(fleet_copy, dag_runner, capfd):
    # Damage the newest telemetry file of machine-temperature, as a torn write would.
    newest = _files_of(fleet_copy, "machine-temperature")[-1]
    newest.write_bytes(b"not a parquet file")

    run = dag_runner.run("risk_scoring", dag_runner.scoring_date, {"shard_size": 1})
    states = dag_runner.states(run)
    scores = _table(fleet_copy, "scores")
    output = capfd.readouterr()

    assert str(run.state) == "failed"
    assert states[("plan_shards", -1)] == "success"
    # Shards are the sorted component names: 0 is ec2-request-latency.
    assert states[("score_shard", 0)] == "success"
    assert states[("score_shard", 1)] == "failed"
    assert states[("report_failed_shards", -1)] == "failed"
    assert sorted(scores["component"].unique()) == ["ec2-request-latency"]
    assert "1 of 2 scoring shards failed: shard 1 (machine-temperature)" in (
        output.out + output.err
    )


def test_plan_fixes_one_scoring_time(fleet_copy):
    from predictor.orchestration import plan_scoring

    newest = plan_scoring(shard_size=1, cutoff="2024-06-01T00:00:00+00:00")
    capped = plan_scoring(shard_size=1, cutoff="2014-03-01T00:00:00+00:00")
    fixed = plan_scoring(shard_size=50, until="2014-02-01T00:00:00Z")

    assert [shard["until"] for shard in newest] == ["2014-03-21T03:41:00+00:00"] * 2
    assert [shard["components"] for shard in newest] == [[name] for name in COMPONENTS]
    assert [shard["until"] for shard in capped] == ["2014-03-01T00:00:00+00:00"] * 2
    # One shard per component group, however large the shard size.
    assert fixed == [
        {"index": index, "components": [name], "until": "2014-02-01T00:00:00+00:00"}
        for index, name in enumerate(COMPONENTS)
    ]


def test_plan_lists_one_group_per_model(fleet_copy):
    from predictor.orchestration import plan_training

    groups = plan_training()

    assert groups == [
        {"index": 0, "group": "predictor-fleet-nab-ec2", "components": ["ec2-request-latency"]},
        {
            "index": 1,
            "group": "predictor-fleet-nab-machine",
            "components": ["machine-temperature"],
        },
    ]


def test_train_group_rejects_foreign_component(fleet_copy):
    from predictor.exceptions import ConfigError
    from predictor.orchestration import train_group

    with pytest.raises(ConfigError, match=r"machine-temperature in 'predictor-fleet-nab-machine'"):
        train_group("predictor-fleet-nab-ec2", ["ec2-request-latency", "machine-temperature"])
