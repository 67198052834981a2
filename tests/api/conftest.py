"""A real uvicorn server of the risk-score API over a risk store filled by the pipeline.

The store contains the real scores of the first 2,500 rows of the shipped NAB EC2 latency
file (ingested, trained and scored by the pipeline, with the champion registered in
MLflow) plus fresh scores for three more components written with
``RiskStore.write_scores``, so filters and pagination have more than one component.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI

from predictor import pipeline
from predictor.api import create_app
from predictor.config import Settings, load_settings
from predictor.store import RiskStore

NAB_FILE = "nab/realKnownCause/ec2_request_latency_system_failure.csv"
TOKENS = ("token-one", "second-token")

CONFIG = """
[model]
n_estimators = 30

[[components]]
name = "ec2-latency"
group = "web"

[[components]]
name = "gpu-node-7"
group = "pool-a"

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
train_fraction = 0.3
"""

# Fresh scores of other components: one per level, in two groups.
EXTRA_SCORES = (
    ("gpu-node-1", "pool-a", 0.91, "critical", 1200.0),
    ("gpu-node-2", "pool-a", 0.72, "high", None),
    ("router-1", "edge", 0.10, "normal", None),
)


@dataclass(frozen=True)
class ApiServer:
    """A running server and what it serves."""

    url: str
    settings: Settings
    store: RiskStore

    def client(self, token: str | None = TOKENS[0]) -> httpx.Client:
        """Return an HTTP client for the server, sending ``token`` when given."""
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free at the time of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="session")
def api_settings(sample_data, tmp_path_factory) -> Settings:
    """Settings of a risk store filled by ingest, train and score on the shipped data."""
    root = tmp_path_factory.mktemp("api")
    frame = pd.read_csv(sample_data / NAB_FILE)
    csv = root / "ec2.csv"
    frame.iloc[:2500].to_csv(csv, index=False)
    config = root / "predictor.toml"
    config.write_text(CONFIG.format(path=csv), encoding="utf-8")
    environ = {"PREDICTOR_HOME": str(root / "home"), "PREDICTOR_API_TOKENS": ",".join(TOKENS)}
    settings = load_settings(config, environ=environ)

    pipeline.ingest(settings)
    pipeline.train(settings)
    result = pipeline.score(settings)
    assert result.scores_written > 0

    store = pipeline.open_risk_store(settings)
    now = pd.Timestamp.now(tz="UTC").floor("s")
    rows = []
    for component, group, risk, level, time_to_threshold in EXTRA_SCORES:
        for minutes_ago in (10, 5, 0):
            rows.append(
                {
                    "component": component,
                    "group": group,
                    "scored_at": now - pd.Timedelta(minutes=minutes_ago),
                    "risk": risk,
                    "level": level,
                    "model_version": "predictor-fleet/1",
                    "time_to_threshold_seconds": time_to_threshold,
                    "drivers": [{"metric": "gpu_temp_celsius", "contribution": 0.8}],
                }
            )
    store.write_scores(pd.DataFrame(rows))
    store.close()
    return settings


@contextmanager
def running_server(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port in a thread; yield its URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="session")
def api_server(api_settings) -> Iterator[ApiServer]:
    """The API on the pipeline's store, served by a real uvicorn on 127.0.0.1."""
    store = RiskStore(api_settings.store_url)
    with running_server(create_app(api_settings)) as url:
        yield ApiServer(url=url, settings=api_settings, store=store)
    store.close()
