"""End-to-end stage tests on real NAB telemetry: ingest, train, score, publish, hooks."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

from predictor import pipeline
from predictor.config import load_settings
from predictor.exceptions import ConfigError
from predictor.store import RiskStore

NAB_FILE = "nab/realKnownCause/ec2_request_latency_system_failure.csv"

CONFIG = """
[model]
members = ["iforest", "ecod", "knn", "pca", "robust_z"]
n_estimators = 50
window_steps = 12
horizon_minutes = 60

[[components]]
name = "ec2-latency"
group = "web"

[[thresholds]]
component = "ec2-latency"
metric = "latency_ms"
value = 60.0

[[sources]]
name = "ec2"
format = "nab"
path = "{path}"
component = "ec2-latency"
metric = "latency_ms"
role = "split"
train_fraction = 0.15
"""

HOOK = """
[[hooks]]
name = "failover-webhook"
type = "webhook"
url = "{url}"
on_levels = ["critical"]
cooldown_minutes = 120
"""


def _write_config(tmp_path: Path, nab_csv: Path, extra: str = "") -> Path:
    config = tmp_path / "predictor.toml"
    config.write_text(CONFIG.format(path=nab_csv) + extra, encoding="utf-8")
    return config


def _nab_prefix(sample_data: Path, tmp_path: Path, rows: int | None = None) -> Path:
    """Copy the real NAB file, or its first ``rows`` data rows, into tmp_path."""
    frame = pd.read_csv(sample_data / NAB_FILE)
    if rows is not None:
        frame = frame.iloc[:rows]
    target = tmp_path / "ec2.csv"
    frame.to_csv(target, index=False)
    return target


@pytest.fixture
def trained(sample_data, tmp_path, isolated_env):
    """Settings with the first 2,500 rows of the real file ingested and trained on."""
    csv = _nab_prefix(sample_data, tmp_path, rows=2500)
    settings = load_settings(_write_config(tmp_path, csv))
    pipeline.ingest(settings)
    pipeline.train(settings)
    return settings, csv


def test_ingest_twice_adds_no_rows(sample_data, tmp_path, isolated_env):
    csv = _nab_prefix(sample_data, tmp_path)
    settings = load_settings(_write_config(tmp_path, csv))

    first = pipeline.ingest(settings)[0]
    second = pipeline.ingest(settings)[0]

    # The file repeats 2014-03-09 03:00 twelve times with different values (a clock
    # change): the first value is kept and the other eleven are quarantined as conflicts.
    assert first.rows_read == 4032
    assert first.written == 4021
    assert first.quarantined == 11
    assert second.written == 0
    assert second.duplicates == 4021
    assert second.quarantined == 11
    assert len(pipeline.open_telemetry(settings).read()) == 4021


def test_train_logs_mlflow_run_and_registers_champion(trained):
    import mlflow

    settings, _ = trained
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    # The component's group "web" gives it its own registered model.
    version = client.get_model_version_by_alias(
        f"{settings.registered_model_name}-web", "champion"
    )
    run = client.get_run(version.run_id)

    assert run.data.params["members"] == "iforest,ecod,knn,pca,robust_z"
    assert run.data.metrics["components"] == 1.0
    assert Path(settings.mlflow_artifact_uri.removeprefix("file://")).is_dir()


def test_score_loads_model_from_mlflow(trained):
    settings, _ = trained
    fleet = pipeline.load_champion(settings)

    assert list(fleet.components) == ["ec2-latency"]
    assert fleet.version == f"{settings.registered_model_name}-web/1"
    assert "latency_ms" in fleet.components["ec2-latency"].forecasters


def test_score_at_time_unchanged_by_later_rows(sample_data, tmp_path, trained):
    settings, csv = trained
    pipeline.score(settings)
    store = pipeline.open_risk_store(settings)
    before = store.scores(component="ec2-latency")

    full_dir = tmp_path / "full"
    full_dir.mkdir()
    shutil.copy(_nab_prefix(sample_data, full_dir), csv)
    pipeline.ingest(settings)
    pipeline.score(settings)
    after = store.scores(component="ec2-latency")

    assert len(before) > 1000
    assert len(after) > len(before)
    merged = before.merge(after, on="scored_at", suffixes=("_before", "_after"))
    assert len(merged) == len(before)
    for column in ("risk", "anomaly_score", "forecast_probability"):
        pd.testing.assert_series_equal(
            merged[f"{column}_before"], merged[f"{column}_after"], check_names=False
        )
    assert (merged["level_before"] == merged["level_after"]).all()


def test_scoring_in_cycles_equals_one_pass(trained, tmp_path, monkeypatch):
    settings, _ = trained
    one_pass = pipeline.score(settings)
    single = pipeline.open_risk_store(settings).scores(component="ec2-latency")

    monkeypatch.setenv("PREDICTOR_STORE_URL", f"sqlite:///{tmp_path / 'cycles.db'}")
    cycled_settings = load_settings(settings.config_path)
    pipeline.replay(cycled_settings, pd.Timedelta(hours=5))
    cycled = pipeline.open_risk_store(cycled_settings).scores(component="ec2-latency")

    assert one_pass.scores_written == len(single) == len(cycled)
    pd.testing.assert_series_equal(single["risk"], cycled["risk"])
    assert single["level"].tolist() == cycled["level"].tolist()


def test_scoring_same_time_twice_adds_no_rows(trained):
    settings, _ = trained
    first = pipeline.score(settings)
    second = pipeline.score(settings)

    assert first.scores_written > 0
    assert second.scores_written == 0


def test_scores_survive_store_reload(trained):
    settings, _ = trained
    pipeline.score(settings)
    before = pipeline.open_risk_store(settings).scores()

    reloaded = RiskStore(settings.store_url).scores()

    assert len(reloaded) == len(before) > 0
    assert str(reloaded["scored_at"].dt.tz) == "UTC"
    pd.testing.assert_series_equal(before["risk"], reloaded["risk"])


def test_scores_are_bounded_and_named(trained):
    settings, _ = trained
    pipeline.score(settings)
    scores = pipeline.open_risk_store(settings).scores()

    assert scores["risk"].between(0, 1).all()
    assert scores["anomaly_score"].between(0, 1).all()
    assert set(scores["level"]) <= {"normal", "elevated", "high", "critical", "unknown"}
    assert (scores["model_version"] == f"{settings.registered_model_name}-web/1").all()
    assert (scores["model_role"] == "champion").all()
    assert (scores["group_name"] == "web").all()


class _Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self):
        length = int(self.headers["Content-Length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook_server():
    _Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/failover", _Recorder.received
    server.shutdown()
    server.server_close()


def test_webhook_called_once_per_critical_entry(
    sample_data, tmp_path, isolated_env, webhook_server
):
    url, received = webhook_server
    frame = pd.read_csv(sample_data / NAB_FILE).iloc[:2000]
    # A sustained rise of the real series: two hours at 95 ms, far above its 40-52 ms range.
    last = pd.Timestamp(frame["timestamp"].iloc[-1], tz="UTC")
    outage = pd.DataFrame(
        {
            "timestamp": [
                (last + pd.Timedelta(minutes=5 * (i + 1))).strftime("%Y-%m-%d %H:%M:%S")
                for i in range(24)
            ],
            "value": 95.0,
        }
    )
    csv = tmp_path / "ec2.csv"
    pd.concat([frame, outage]).to_csv(csv, index=False)
    settings = load_settings(_write_config(tmp_path, csv, HOOK.format(url=url)))

    pipeline.ingest(settings)
    pipeline.train(settings)
    pipeline.score(settings)
    pipeline.score(settings)

    calls = pipeline.open_risk_store(settings).hook_calls()
    critical_entries = calls[calls["level"] == "critical"]
    assert len(received) == len(critical_entries) == 1
    assert received[0]["component"] == "ec2-latency"
    assert received[0]["level"] == "critical"
    assert pd.Timestamp(received[0]["scored_at"]) > last
    assert critical_entries["status"].tolist() == ["delivered"]


def test_silence_marked_once_as_unknown(trained):
    settings, _ = trained
    last_row = pipeline.open_telemetry(settings).last_timestamp("ec2-latency")
    later = last_row + pd.Timedelta(hours=3)

    pipeline.score(settings, until=later)
    repeated = pipeline.score(settings, until=later + pd.Timedelta(hours=1))
    latest = pipeline.open_risk_store(settings).last_score("ec2-latency")

    assert repeated.scores_written == 0
    assert latest["level"] == "unknown"
    assert latest["stale"]
    assert last_row < latest["scored_at"] <= last_row + pd.Timedelta(minutes=20)


def test_score_rejects_component_without_model(trained):
    settings, _ = trained

    with pytest.raises(ConfigError, match="'gpu-07' has no trained model"):
        pipeline.score(settings, components=["gpu-07"])


def test_score_of_named_components_equals_full_pass(trained):
    settings, _ = trained

    result = pipeline.score(settings, components=["ec2-latency"])

    assert result.components_scored == 1
    assert result.scores_written > 0
    assert pipeline.score(settings).scores_written == 0


def test_score_records_each_run(trained):
    from predictor.scoring_runs import summarize_scoring_runs

    settings, _ = trained

    first = pipeline.score(settings, components=["ec2-latency"])
    pipeline.score(settings)
    summary = summarize_scoring_runs(pipeline.open_risk_store(settings).engine)

    assert first.scores_written > 0
    assert summary is not None
    assert summary.runs == 2
    assert summary.failed_runs == 0
