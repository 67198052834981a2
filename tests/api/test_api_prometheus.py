"""A real Prometheus server scrapes /metrics and returns the gauges through its query API."""

from __future__ import annotations

import shutil
import subprocess
import time

import httpx
import pytest

from tests.api.conftest import TOKENS, free_port

pytestmark = pytest.mark.slow

PROMETHEUS = shutil.which("prometheus")

CONFIG = """
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: predictor
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials: {token}
    static_configs:
      - targets: ["{target}"]
"""


def _query(client: httpx.Client, expression: str) -> list[dict]:
    response = client.get("/api/v1/query", params={"query": expression})
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _wait_for(client: httpx.Client, expression: str, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = _query(client, expression)
        except (httpx.TransportError, httpx.HTTPStatusError):
            # Prometheus refuses connections, then returns 503, until its storage is ready.
            result = []
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"Prometheus returned nothing for {expression} within {timeout} s")


@pytest.mark.skipif(
    PROMETHEUS is None,
    reason="the prometheus binary is not on PATH; .ci/run installs the Debian package",
)
def test_prometheus_scrapes_failure_risk(api_server, tmp_path):
    target = api_server.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(CONFIG.format(token=TOKENS[1], target=target), encoding="utf-8")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w", encoding="utf-8")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            critical = _wait_for(client, 'predictor_failure_risk{component="gpu-node-1"}')
            up = _query(client, 'up{job="predictor"}')
            level = _query(client, 'predictor_risk_level{component="gpu-node-1",level="critical"}')
            ec2 = _query(client, 'predictor_failure_risk{component="ec2-latency"}')
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()

    expected = api_server.store.last_score("ec2-latency")["risk"]
    assert [sample["metric"]["group"] for sample in critical] == ["pool-a"]
    assert float(critical[0]["value"][1]) == pytest.approx(0.91)
    assert float(up[0]["value"][1]) == 1.0
    assert float(level[0]["value"][1]) == 1.0
    assert float(ec2[0]["value"][1]) == pytest.approx(expected)
