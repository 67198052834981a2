"""Parse-time checks of dags/: import errors, parse time, no I/O, and the DAG shapes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
DAG_FILES = sorted(DAGS.glob("*.py"))
MAX_PARSE_SECONDS = 2.0

# Runs one DAG file the way the DAG processor does (Airflow already imported) and
# reports how long the file took, and every connection, database access, Variable or
# Connection lookup and non-code file read that happened while it ran.
PARSE_PROBE = r"""
import importlib.util, json, sys, time

import airflow.sdk
# The DAG processor has croniter loaded already; importing it runs `file -b` once.
import croniter
from airflow.sdk.definitions._internal.contextmanager import DagContext

dag_file, prefixes = sys.argv[1], tuple(json.loads(sys.argv[2]))
events = []

def audit(event, args):
    if event in ("socket.connect", "sqlite3.connect", "subprocess.Popen"):
        events.append([event, repr(args)[:200]])
    elif event == "open":
        path = str(args[0])
        code = path.endswith((".py", ".pyc")) or path.startswith(prefixes)
        if path != dag_file and not code:
            events.append([event, path])

def record(name):
    def lookup(*args, **kwargs):
        events.append([name, repr(args)[:200]])
        raise RuntimeError(f"{name} called while parsing")
    return lookup

airflow.sdk.Variable.get = record("Variable.get")
airflow.sdk.Connection.get = record("Connection.get")
airflow.sdk.BaseHook.get_connection = record("BaseHook.get_connection")
sys.addaudithook(audit)
spec = importlib.util.spec_from_file_location("dag_file_probe", dag_file)
module = importlib.util.module_from_spec(spec)
sys.modules["dag_file_probe"] = module
DagContext.current_autoregister_module_name = "dag_file_probe"
started = time.perf_counter()
spec.loader.exec_module(module)
elapsed = time.perf_counter() - started
dag_ids = sorted(dag.dag_id for dag, _ in DagContext.autoregistered_dags)
heavy = ("pandas", "sklearn", "mlflow", "predictor")
modules = sorted(name for name in heavy if name in sys.modules)
print(json.dumps({"seconds": elapsed, "events": events, "modules": modules, "dag_ids": dag_ids}))
"""


def _probe(dag_file: Path, airflow_home: Path) -> dict:
    # Reads of the interpreter's own files (time zone data, package metadata) are
    # code, not data, so only reads outside the installation are reported.
    prefixes = sorted({sys.prefix, sys.base_prefix, sys.exec_prefix})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    completed = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, str(dag_file), json.dumps(prefixes)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_dagbag_has_no_import_errors(dag_bag):
    assert dag_bag.import_errors == {}
    assert sorted(dag_bag.dag_ids) == sorted(path.stem for path in DAG_FILES)
    assert len(DAG_FILES) == 3


@pytest.mark.parametrize("dag_file", DAG_FILES, ids=lambda path: path.stem)
def test_dag_file_parses_fast_without_io(dag_file, airflow_home):
    probe = _probe(dag_file, airflow_home)

    print(f"{dag_file.name}: parsed in {probe['seconds']:.3f} s")
    assert probe["dag_ids"] == [dag_file.stem]
    assert probe["seconds"] < MAX_PARSE_SECONDS
    assert probe["events"] == []
    assert probe["modules"] == []


def test_parse_probe_reports_io(tmp_path, airflow_home):
    data = tmp_path / "fleet.csv"
    data.write_text("component\n", encoding="utf-8")
    dag_file = tmp_path / "reads_at_parse.py"
    dag_file.write_text(
        "import sqlite3\n"
        "from airflow.sdk import Variable, dag\n"
        f"rows = open({str(data)!r}).read()\n"
        f"sqlite3.connect({str(tmp_path / 'store.db')!r}).close()\n"
        "try:\n"
        "    Variable.get('fleet')\n"
        "except RuntimeError:\n"
        "    pass\n"
        "@dag(dag_id='reads_at_parse', schedule=None)\n"
        "def reads_at_parse():\n"
        "    pass\n"
        "reads_at_parse()\n",
        encoding="utf-8",
    )

    probe = _probe(dag_file, airflow_home)
    kinds = [event[0] for event in probe["events"]]

    assert probe["dag_ids"] == ["reads_at_parse"]
    assert ["open", str(data)] in probe["events"]
    assert "sqlite3.connect" in kinds
    assert "Variable.get" in kinds


def test_scoring_runs_on_ingest_asset(dag_bag):
    ingest = dag_bag.dags["telemetry_ingest"]
    scoring = dag_bag.dags["risk_scoring"]
    outlets = ingest.task_dict["publish_telemetry"].outlets

    assert [asset.name for asset in outlets] == ["predictor-telemetry"]
    assert [asset.name for asset in scoring.timetable.asset_condition.objects] == [
        "predictor-telemetry"
    ]


def test_dags_schedules_and_concurrency(dag_bag):
    ingest = dag_bag.dags["telemetry_ingest"]
    training = dag_bag.dags["model_training"]
    scoring = dag_bag.dags["risk_scoring"]

    assert ingest.schedule == timedelta(minutes=5)
    assert training.schedule == "@daily"
    for dag in (ingest, training, scoring):
        assert dag.catchup is False
        assert dag.max_active_runs == 1
        assert dag.doc_md


def test_external_tasks_retry_with_backoff(dag_bag):
    external = {
        "telemetry_ingest": ["ingest_telemetry", "compact_telemetry"],
        "model_training": ["plan_groups", "train_group"],
        "risk_scoring": ["plan_shards", "score_shard"],
    }
    for dag_id, task_ids in external.items():
        for task_id in task_ids:
            task = dag_bag.dags[dag_id].task_dict[task_id]
            assert task.retries == 3, (dag_id, task_id)
            assert task.retry_exponential_backoff == 2.0, (dag_id, task_id)
            assert task.retry_delay >= timedelta(seconds=30), (dag_id, task_id)


def test_scoring_maps_shards_and_reports_failures(dag_bag):
    scoring = dag_bag.dags["risk_scoring"]
    plan = scoring.task_dict["plan_shards"]
    shard = scoring.task_dict["score_shard"]
    report = scoring.task_dict["report_failed_shards"]

    assert plan.downstream_task_ids == {"score_shard", "report_failed_shards"}
    assert shard.downstream_task_ids == {"report_failed_shards"}
    assert type(shard).__name__.endswith("MappedOperator")
    assert report.trigger_rule == "all_done"


def test_training_maps_groups_and_reports_failures(dag_bag):
    training = dag_bag.dags["model_training"]
    plan = training.task_dict["plan_groups"]
    group = training.task_dict["train_group"]
    report = training.task_dict["report_failed_groups"]

    assert plan.downstream_task_ids == {"train_group", "report_failed_groups"}
    assert group.downstream_task_ids == {"report_failed_groups"}
    assert type(group).__name__.endswith("MappedOperator")
    assert report.trigger_rule == "all_done"
