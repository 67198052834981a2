"""The demo job, `predictor run` with no arguments, on the real sample in data/."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, sample_data):
    """Run the demo once, as `make demo` does, with state in a temporary home."""
    home = tmp_path_factory.mktemp("demo") / "home"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("PREDICTOR_") and key != "MLFLOW_TRACKING_URI"
    }
    env["PREDICTOR_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-m", "predictor.cli", "run"],
        cwd=sample_data.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return result, home


pytestmark = pytest.mark.slow


def test_demo_exits_zero_and_prints_tables(demo_run):
    result, _ = demo_run

    assert result.returncode == 0, result.stderr[-3000:]
    assert "component" in result.stdout
    assert "labeled failure (UTC)" in result.stdout
    for component in ("machine-temperature", "ec2-request-latency", "smd-machine-1-2"):
        assert component in result.stdout


def test_demo_warns_before_machine_failure(demo_run):
    result, _ = demo_run
    line = next(
        line
        for line in result.stdout.splitlines()
        if line.startswith("machine-temperature") and "2014-02-08 14:30" in line
    )

    match = re.search(r"warned (\d+h \d+m|\d+m|\d+d \d+h \d+m) before", line)

    assert match, line


def test_demo_leaves_state_under_home(demo_run):
    _, home = demo_run

    assert any((home / "telemetry").rglob("*.parquet"))
    with sqlite3.connect(home / "risk.db") as connection:
        scores = connection.execute("SELECT COUNT(*) FROM scores").fetchone()[0]
        calls = connection.execute("SELECT COUNT(*) FROM hook_calls").fetchone()[0]
        levels = {row[0] for row in connection.execute("SELECT DISTINCT level FROM scores")}
    with sqlite3.connect(home / "mlflow.db") as connection:
        runs = connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        models = {row[0] for row in connection.execute("SELECT name FROM registered_models")}

    assert scores > 50_000
    assert calls >= 1
    assert "critical" in levels
    # The sample's groups "nab" and "smd" each get a registered model and a training run.
    assert models == {"predictor-fleet-nab", "predictor-fleet-smd"}
    assert runs == 2


def test_demo_hook_requests_match_records(demo_run):
    _, home = demo_run
    requests = [
        json.loads(line)
        for line in (home / "failover-requests.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    with sqlite3.connect(home / "risk.db") as connection:
        delivered = connection.execute(
            "SELECT COUNT(*) FROM hook_calls WHERE status = 'delivered'"
        ).fetchone()[0]

    assert len(requests) == delivered
    assert {request["level"] for request in requests} == {"critical"}
