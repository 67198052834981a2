"""Run risk_scoring on a real Airflow started with `airflow standalone` on 127.0.0.1.

The test starts the scheduler, DAG processor, triggerer and API server on a free port
with this repository's dags/ and a temporary AIRFLOW_HOME, triggers the DAG through
the REST API (v2, with a JWT from /auth/token) and waits for the run to succeed.

`airflow standalone` runs its tasks with the LocalExecutor, which Airflow 3.3 accepts
on a SQLite metadata database, and the test sets ``parallelism`` to 4, so the scoring
shards run in separate worker processes at the same time. The test checks from the task
instances' start and end times that they did overlap, and that the scores and hook
calls equal those of one `predictor score` process on a copy of the same home.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 120
RUN_TIMEOUT_S = 150
SCORE_TIMEOUT_S = 300
# Row ids and wall-clock columns, which differ between two stores scored apart.
RUN_COLUMNS = {
    "scores": ["id", "created_at"],
    "hook_calls": ["id", "called_at", "delivered_at", "next_attempt_at"],
}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AirflowApi:
    """A small client of Airflow's REST API v2 on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token: str | None = None

    def request(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def text(self, path: str) -> str:
        request = urllib.request.Request(
            self.base + path, headers={"Authorization": f"Bearer {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode(errors="replace")

    def wait_for(self, path: str, timeout: float) -> dict:
        """Request ``path`` until the server responds, or fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.token is None:
                    # simple_auth_manager_all_admins hands out an admin token without login.
                    self.token = self.request("GET", "/auth/token")["access_token"]
                return self.request("GET", path)
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.base}{path} not available: {error}") from error
                time.sleep(2)


def _environment(airflow_home: Path, port: int, predictor_home: Path, config: Path) -> dict:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "PREDICTOR_")) and name != "MLFLOW_TRACKING_URI"
    }
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        {
            # standalone starts its components as `airflow ...` from PATH.
            "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(_free_port()),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(_free_port()),
            "PREDICTOR_HOME": str(predictor_home),
            "PREDICTOR_CONFIG": str(config),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    return env


def _stop(process: subprocess.Popen) -> None:
    """Stop standalone and every process it started, which share its process group."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    # Components that outlive the parent are still in its group.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _task_logs(api: AirflowApi, run_id: str) -> str:
    instances = api.request("GET", f"/api/v2/dags/risk_scoring/dagRuns/{run_id}/taskInstances")
    parts = []
    for instance in instances["task_instances"]:
        task_id, map_index = instance["task_id"], instance["map_index"]
        parts.append(f"--- {task_id}[{map_index}] {instance['state']}")
        for attempt in range(1, (instance.get("try_number") or 0) + 1):
            path = (
                f"/api/v2/dags/risk_scoring/dagRuns/{run_id}/taskInstances/{task_id}"
                f"/logs/{attempt}?map_index={map_index}"
            )
            try:
                parts.append(api.text(path)[-4000:])
            except urllib.error.URLError as error:
                parts.append(f"log not available: {error}")
    return "\n".join(parts)


def _score_single_process(home: Path, config: Path) -> str:
    """Score ``home`` with one `predictor score` process and return its output."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "PREDICTOR_")) and name != "MLFLOW_TRACKING_URI"
    }
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "PREDICTOR_HOME": str(home),
            "PREDICTOR_CONFIG": str(config),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from predictor.cli import main; raise SystemExit(main())",
            "score",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=SCORE_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed.stdout


def _stored(home: Path, table: str) -> pd.DataFrame:
    """Return a risk store table without its run columns, in a stable row order."""
    with sqlite3.connect(home / "risk.db") as connection:
        frame = pd.read_sql_query(f"SELECT * FROM {table}", connection)
    return frame.drop(columns=RUN_COLUMNS[table]).sort_values(
        [column for column in frame.columns if column not in RUN_COLUMNS[table]],
        ignore_index=True,
    )


def _overlap_seconds(instances: list[dict]) -> float:
    """Return how long every given task instance was running at once, or a negative gap."""
    starts = [pd.Timestamp(item["start_date"]) for item in instances]
    ends = [pd.Timestamp(item["end_date"]) for item in instances]
    return (min(ends) - max(starts)).total_seconds()


def test_standalone_shards_match_single_process(trained_fleet, tmp_path):
    import shutil

    predictor_home = tmp_path / "predictor-home"
    shutil.copytree(trained_fleet.home, predictor_home)
    single_home = tmp_path / "single-process-home"
    shutil.copytree(trained_fleet.home, single_home)
    airflow_home = tmp_path / "airflow-home"
    airflow_home.mkdir()
    port = _free_port()
    env = _environment(airflow_home, port, predictor_home, trained_fleet.config)
    log_path = tmp_path / "standalone.log"
    started = time.monotonic()

    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "airflow", "standalone"],
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = AirflowApi(port)
    state, run_id = None, None
    try:
        api.wait_for("/api/v2/dags/risk_scoring", STARTUP_TIMEOUT_S)
        api.request("PATCH", "/api/v2/dags/risk_scoring", {"is_paused": False})
        run = api.request(
            "POST",
            "/api/v2/dags/risk_scoring/dagRuns",
            {"logical_date": None, "conf": {"shard_size": 1}},
        )
        run_id = run["dag_run_id"]
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            state = api.request("GET", f"/api/v2/dags/risk_scoring/dagRuns/{run_id}")["state"]
            if state in ("success", "failed"):
                break
            time.sleep(3)
        if state != "success":
            print(_task_logs(api, run_id))
            print(log_path.read_text(errors="replace")[-6000:])
        instances = api.request(
            "GET", f"/api/v2/dags/risk_scoring/dagRuns/{run_id}/taskInstances"
        )["task_instances"]
    finally:
        _stop(process)
    print(f"standalone Airflow: run {run_id} {state} after {time.monotonic() - started:.1f} s")
    shards = sorted(
        (item for item in instances if item["task_id"] == "score_shard"),
        key=lambda item: item["map_index"],
    )
    overlap = _overlap_seconds(shards)
    for shard in shards:
        print(
            f"score_shard[{shard['map_index']}]: {shard['start_date']} to {shard['end_date']} "
            f"on {shard.get('hostname')} pid {shard.get('pid')}"
        )
    print(f"score_shard tasks ran together for {overlap:.1f} s")

    single_started = time.monotonic()
    _score_single_process(single_home, trained_fleet.config)
    print(f"single-process predictor score: {time.monotonic() - single_started:.1f} s")

    assert state == "success"
    assert [(item["map_index"], item["state"]) for item in shards] == [
        (0, "success"),
        (1, "success"),
    ]
    # Sequential shards would give a negative value: one ended before the other started.
    assert overlap > 0
    assert len({item["pid"] for item in shards}) == 2
    for table in ("scores", "hook_calls"):
        sharded = _stored(predictor_home, table)
        single = _stored(single_home, table)
        assert len(sharded) > 0, table
        pd.testing.assert_frame_equal(sharded, single, obj=table)
    assert sorted(_stored(predictor_home, "scores")["component"].unique()) == [
        "ec2-request-latency",
        "machine-temperature",
    ]
