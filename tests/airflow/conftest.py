"""Fixtures for the DAG tests: a temporary Airflow home and a trained sample fleet.

The full sample fleet takes minutes to ingest, train and score on 2 cores, so the DAG
tests run its two NAB components: the sources, thresholds, labels, levels and failover
hook of the repository's data/predictor.toml, with paths made absolute.

Airflow reads its configuration when it is first imported, so the session fixture sets
``AIRFLOW_HOME`` and the metadata database before any test imports it. The database is
SQLite in a temporary folder, migrated once per session.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
# Each DAG file and the dag_id it defines.
DAG_IDS = ("telemetry_ingest", "model_training", "risk_scoring")
# Logical dates of the test runs. Airflow creates no task instances before a DAG's
# start_date (2024-01-01), and the NAB telemetry ends on 2014-03-21 03:41 UTC, so a
# scoring run for these dates scores all of it.
INGEST_DATE = pd.Timestamp("2024-06-01T12:00:00Z")
TRAINING_DATE = pd.Timestamp("2024-06-01T00:00:00Z")
SCORING_DATE = pd.Timestamp("2024-06-01T12:05:00Z")
# A smaller forest than the sample's default keeps training within seconds.
MODEL_OVERRIDES = {"n_estimators": 50}
# One component group (registered model) per NAB component, so the training DAG maps
# over two groups.
TRAINING_GROUPS = {"ec2-request-latency": "nab-ec2", "machine-temperature": "nab-machine"}
SAMPLE_CONFIG = REPO / "data" / "predictor.toml"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"no TOML form written for {value!r}")


def _table(header: str, table: dict[str, Any]) -> list[str]:
    return [header, *(f"{key} = {_value(value)}" for key, value in table.items()), ""]


def write_nab_fleet_config(
    target: Path, model: dict[str, Any] | None = None, groups: dict[str, str] | None = None
) -> Path:
    """Write the NAB sources of data/predictor.toml to ``target`` and return it.

    ``model`` overrides keys of the ``[model]`` table, for example a smaller forest, and
    ``groups`` overrides the group of the components it names.
    """
    raw = tomllib.loads(SAMPLE_CONFIG.read_text(encoding="utf-8"))
    base = SAMPLE_CONFIG.parent
    sources = [source for source in raw["sources"] if source["format"] == "nab"]
    for source in sources:
        for key in ("path", "labels_path", "windows_path"):
            if key in source:
                source[key] = str((base / source[key]).resolve())
    names = {source["component"] for source in sources}

    lines = _table("[predictor]", raw["predictor"])
    lines += _table("[model]", {**raw["model"], **(model or {})})
    lines += _table("[levels]", raw["levels"])
    for component in raw["components"]:
        if component["name"] in names:
            if component["name"] in (groups or {}):
                component = {**component, "group": groups[component["name"]]}
            lines += _table("[[components]]", component)
    for threshold in raw["thresholds"]:
        if threshold.get("component") in names:
            lines += _table("[[thresholds]]", threshold)
    for source in sources:
        lines += _table("[[sources]]", source)
    for hook in raw["hooks"]:
        lines += _table("[[hooks]]", hook)
    target.write_text("\n".join(lines), encoding="utf-8")
    return target


def airflow_environment(home: Path) -> dict[str, str]:
    """Return the Airflow settings of a local test installation under ``home``."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
    }


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory) -> Path:
    """Point Airflow at a migrated SQLite metadata database in a temporary home."""
    if "airflow" in sys.modules:
        pytest.fail(
            "airflow was imported before the Airflow test fixture set AIRFLOW_HOME; "
            "the DAG tests would use the wrong metadata database"
        )
    # skops.io reads an attribute of every loaded module on its first import. Once
    # Airflow is loaded, that includes deprecated Airflow aliases, whose
    # DeprecatedImportWarning fails the training task under filterwarnings=error.
    # Importing skops.io before Airflow keeps Airflow's modules out of that scan.
    import skops.io  # noqa: F401

    home = tmp_path_factory.mktemp("airflow-home")
    environment = airflow_environment(home)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        migrated = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        yield home


@pytest.fixture(scope="session")
def dag_bag(airflow_home):
    """The DAGs of dags/, parsed by Airflow's DagBag."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


class DagRunner:
    """Runs the DAGs of dags/ with ``dag.test()`` and reads their task states."""

    scoring_date = SCORING_DATE

    def __init__(self, dag_bag) -> None:
        self.dag_bag = dag_bag

    def run(self, dag_id: str, logical_date: pd.Timestamp, conf: dict | None = None):
        """Run one DAG for ``logical_date`` and return the DagRun."""
        dag = self.dag_bag.dags[dag_id]
        return dag.test(logical_date=logical_date.to_pydatetime(), run_conf=conf)

    @staticmethod
    def states(dag_run) -> dict[tuple[str, int], str]:
        """Return each task instance's state by (task_id, map_index)."""
        return {(ti.task_id, ti.map_index): str(ti.state) for ti in dag_run.get_task_instances()}


@pytest.fixture(scope="session")
def dag_runner(dag_bag) -> DagRunner:
    """Runs the project's DAGs against the session's Airflow metadata database."""
    return DagRunner(dag_bag)


@dataclass(frozen=True)
class TrainedFleet:
    """A PREDICTOR_HOME with the NAB sample ingested and trained through the DAGs."""

    home: Path
    config: Path
    ingest_date: pd.Timestamp
    ingest_run: Any
    training_date: pd.Timestamp
    training_run: Any


def use_home(monkeypatch: pytest.MonkeyPatch, home: Path, config: Path) -> None:
    """Point the predictor tasks at ``home`` and ``config``."""
    for name in list(os.environ):
        if name.startswith("PREDICTOR_") or name == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREDICTOR_HOME", str(home))
    monkeypatch.setenv("PREDICTOR_CONFIG", str(config))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@pytest.fixture(scope="session")
def trained_fleet(dag_runner, tmp_path_factory) -> TrainedFleet:
    """Run telemetry_ingest and model_training once on the NAB part of the sample."""
    root = tmp_path_factory.mktemp("fleet")
    config = write_nab_fleet_config(root / "predictor.toml", MODEL_OVERRIDES, TRAINING_GROUPS)
    home = root / "home"
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, home, config)
        ingest_run = dag_runner.run("telemetry_ingest", INGEST_DATE)
        training_run = dag_runner.run("model_training", TRAINING_DATE)
    return TrainedFleet(home, config, INGEST_DATE, ingest_run, TRAINING_DATE, training_run)


@pytest.fixture
def fleet_home(trained_fleet, monkeypatch) -> Path:
    """Point the predictor tasks at the trained fleet's own home."""
    use_home(monkeypatch, trained_fleet.home, trained_fleet.config)
    return trained_fleet.home


@pytest.fixture
def fleet_copy(trained_fleet, tmp_path, monkeypatch) -> Path:
    """A private copy of the trained fleet's home, used by the predictor tasks.

    The MLflow database of the copy still points at the model artifacts of the original
    home, which the tests only read.
    """
    home = tmp_path / "home"
    shutil.copytree(trained_fleet.home, home)
    use_home(monkeypatch, home, trained_fleet.config)
    return home
