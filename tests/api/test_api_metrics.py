"""The /metrics exposition: gauges per component, scoring runs, and its protection."""

from __future__ import annotations

import dataclasses

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from predictor.api import create_app
from predictor.cli import main
from predictor.config import ApiConfig
from tests.api.conftest import running_server

pytestmark = pytest.mark.slow


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_expose_latest_scores(api_server):
    with api_server.client() as client:
        response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.text)
    node = (("component", "gpu-node-1"), ("group", "pool-a"))
    assert samples[("predictor_store_up", ())] == 1.0
    assert samples[("predictor_failure_risk", node)] == pytest.approx(0.91)
    assert samples[("predictor_time_to_threshold_seconds", node)] == 1200.0
    assert samples[("predictor_risk_level", (*node, ("level", "critical")))] == 1.0
    assert samples[("predictor_risk_level", (*node, ("level", "normal")))] == 0.0
    assert samples[("predictor_risk_calibrated", node)] == 0.0
    assert 0.0 <= samples[("predictor_score_age_seconds", node)] < 3600

    ec2 = (("component", "ec2-latency"), ("group", "web"))
    stored = api_server.store.last_score("ec2-latency")
    age = samples[("predictor_score_age_seconds", ec2)]
    expected_age = (pd.Timestamp.now(tz="UTC") - stored["scored_at"]).total_seconds()
    assert age == pytest.approx(expected_age, abs=120)
    assert samples[("predictor_failure_risk", ec2)] == pytest.approx(stored["risk"])


def test_metrics_open_when_configured(api_settings):
    settings = dataclasses.replace(api_settings, api=ApiConfig(metrics_auth=False, tokens=("t",)))

    with running_server(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        metrics = client.get("/metrics")
        risk = client.get("/v1/risk")

    assert metrics.status_code == 200
    assert "predictor_failure_risk{" in metrics.text
    assert risk.status_code == 401


def test_score_command_records_run_for_metrics(api_server, monkeypatch):
    settings = api_server.settings
    monkeypatch.setenv("PREDICTOR_HOME", str(settings.home))
    monkeypatch.setenv("PREDICTOR_CONFIG", str(settings.config_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    # The store already contains every score up to the newest telemetry, so the run writes
    # nothing new but is still recorded.
    assert main(["score"]) == 0
    with api_server.client() as client:
        samples = _samples(client.get("/metrics").text)

    assert samples[("predictor_scoring_runs_total", ())] >= 1.0
    assert samples[("predictor_scoring_runs_failed_total", ())] == 0.0
    assert samples[("predictor_scoring_run_failed_components", ())] == 0.0
    assert samples[("predictor_scoring_component_errors_total", ())] == 0.0
    assert 0.0 < samples[("predictor_scoring_run_duration_seconds", ())] < 600
    finished = samples[("predictor_scoring_run_last_finished_timestamp_seconds", ())]
    assert abs(finished - pd.Timestamp.now(tz="UTC").timestamp()) < 600


def test_failed_score_command_counts_as_failed_run(api_server, tmp_path, monkeypatch):
    # A home without a trained model makes the whole run fail; its store is a new one.
    home = tmp_path / "empty-home"
    monkeypatch.setenv("PREDICTOR_HOME", str(home))
    monkeypatch.setenv("PREDICTOR_CONFIG", str(api_server.settings.config_path))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    assert main(["score"]) == 2
    settings = dataclasses.replace(api_server.settings, store_url=f"sqlite:///{home / 'risk.db'}")
    with (
        running_server(create_app(settings)) as url,
        httpx.Client(base_url=url, headers={"Authorization": "Bearer token-one"}) as client,
    ):
        samples = _samples(client.get("/metrics").text)

    assert samples[("predictor_scoring_runs_total", ())] == 1.0
    assert samples[("predictor_scoring_runs_failed_total", ())] == 1.0


def test_metrics_show_open_hook_breaker(api_settings, tmp_path):
    from predictor.config import HookConfig
    from predictor.store import RiskStore

    hook = HookConfig(name="drain", type="webhook", url="http://127.0.0.1:9/hook")
    store = RiskStore(f"sqlite:///{tmp_path / 'risk.db'}")
    store.record_breaker_result(
        "http://127.0.0.1:9", ok=False, now=pd.Timestamp.now(tz="UTC"), threshold=1
    )
    settings = dataclasses.replace(api_settings, store_url=store.url, hooks=(hook,))

    with (
        running_server(create_app(settings, store=store)) as url,
        httpx.Client(base_url=url, headers={"Authorization": "Bearer token-one"}) as client,
    ):
        samples = _samples(client.get("/metrics").text)
    store.close()

    family = "predictor_hook_breaker_state"
    assert samples[(family, (("state", "open"), ("target", "http://127.0.0.1:9")))] == 1.0
    assert samples[(family, (("state", "closed"), ("target", "http://127.0.0.1:9")))] == 0.0
