"""The Prometheus source against an HTTP server on 127.0.0.1 that replays saved
responses: the R06 case (NaN and +Inf in a quiet period), retries, timeouts and errors.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd
import pytest

from predictor.config import load_settings
from predictor.telemetry import TelemetryStore, ingest_source
from predictor.telemetry.freshness import stale_reasons
from predictor.telemetry.prometheus import PrometheusError, chunk_ranges, read_prometheus
from predictor.telemetry.series import REASON_INF_SAMPLE, REASON_NAN_SAMPLE

R06 = Path(__file__).resolve().parents[1] / "cases" / "R06-prom-nan-inf.json"
QUIET_START = pd.Timestamp(1780363800, unit="s", tz="UTC")
QUIET_END = pd.Timestamp(1780365240, unit="s", tz="UTC")


class ReplayServer(ThreadingHTTPServer):
    """Replies to query_range with scripted (status, body, delay) tuples, in order."""

    def __init__(self, replies: list[tuple[int, dict, float]]) -> None:
        super().__init__(("127.0.0.1", 0), ReplayHandler)
        self.replies = replies
        self.requests: list[dict[str, list[str]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ReplayHandler(BaseHTTPRequestHandler):
    server: ReplayServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode())
        self.server.requests.append(form)
        index = min(len(self.server.requests), len(self.server.replies)) - 1
        status, body, delay_seconds = self.server.replies[index]
        if callable(body):
            body = body(form)
        time.sleep(delay_seconds)
        payload = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up after its timeout

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean."""


@pytest.fixture
def replay() -> Iterator:
    servers: list[ReplayServer] = []

    def start(replies: list[tuple[int, object, float]]) -> ReplayServer:
        server = ReplayServer(replies)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _r06_for_query(form: dict[str, list[str]]) -> dict:
    """The saved response, limited to the series that the requested query selects."""
    payload = json.loads(R06.read_text(encoding="utf-8"))
    wanted = "quantile" if "latency" in form["query"][0] else "ratio"
    payload["data"]["result"] = [
        item for item in payload["data"]["result"] if wanted in item["metric"]
    ]
    return payload


def _settings(tmp_path: Path, url: str, extra: str = "", queries: str | None = None):
    queries = (
        queries
        or """
[[sources.queries]]
query = "histogram_quantile(0.99, sum by (component, le) (rate(checkout_latency_bucket[5m])))"
metric = "latency_p99_seconds"

[[sources.queries]]
query = "sum by (component) (rate(errors_total[5m])) / sum by (component) (rate(requests[5m]))"
metric = "error_ratio"
"""
    )
    config = tmp_path / "predictor.toml"
    config.write_text(
        f"""
[[sources]]
name = "checkout"
format = "prometheus"
url = "{url}"
start = "2026-06-02T01:00:00Z"
end = "2026-06-02T02:59:00Z"
step_seconds = 60
component_label = "component"
retry_backoff_seconds = 0.01
{extra}
{queries}
""",
        encoding="utf-8",
    )
    return load_settings(config, environ={"PREDICTOR_HOME": str(tmp_path / "home")})


def test_r06_special_values_quarantined(replay, tmp_path):
    server = replay([(200, _r06_for_query, 0.0)])
    settings = _settings(tmp_path, server.url)

    summary = ingest_source(settings.sources[0], settings)
    stored = TelemetryStore(settings.telemetry_dir).read()
    quarantine = pd.read_csv(summary.quarantine_file, keep_default_na=False)

    # Each series has 120 samples and 25 in the quiet period: the latency's are NaN, the
    # error ratio's are 24 NaN and one +Inf (a division by a zero request rate).
    assert (summary.rows_read, summary.written, summary.quarantined) == (240, 190, 50)
    assert summary.reasons == {REASON_NAN_SAMPLE: 49, REASON_INF_SAMPLE: 1}
    assert set(quarantine["raw_value"]) == {"NaN", "+Inf"}
    assert quarantine["timestamp"].min() == "2026-06-02T01:30:00.000000Z"
    assert quarantine["timestamp"].max() == "2026-06-02T01:54:00.000000Z"
    assert set(stored["metric"]) == {"latency_p99_seconds", "error_ratio"}
    assert stored["value"].map(pd.notna).all()


def test_r06_quiet_period_reads_as_stale(replay, tmp_path):
    server = replay([(200, _r06_for_query, 0.0)])
    settings = _settings(tmp_path, server.url)
    ingest_source(settings.sources[0], settings)
    rows = TelemetryStore(settings.telemetry_dir).read(components=["checkout"])
    grid = pd.date_range("2026-06-02T01:00Z", "2026-06-02T02:59Z", freq="min")

    reasons = pd.Series(stale_reasons(rows, grid, pd.Timedelta(minutes=3)), index=grid)

    # From 3 minutes into the quiet period to its end, the telemetry is stale.
    stale = reasons.dropna()
    assert stale.index[0] == QUIET_START + pd.Timedelta(minutes=3)
    assert stale.index[-1] == QUIET_END
    assert set(stale) == {"no telemetry for more than 3 minutes"}


def test_retries_overload_then_succeeds(replay, tmp_path, caplog):
    overloaded = {"status": "error", "errorType": "unavailable", "error": "too many queries"}
    server = replay([(503, overloaded, 0.0), (503, overloaded, 0.0), (200, _r06_for_query, 0.0)])
    settings = _settings(
        tmp_path,
        server.url,
        queries="""
[[sources.queries]]
query = "latency"
metric = "latency_p99_seconds"
""",
    )

    raw = read_prometheus(settings.sources[0])

    assert raw.rows_read == 120
    assert len(server.requests) == 3
    assert caplog.text.count("failed (HTTP 503: too many queries); retrying") == 2


def test_timeout_names_query_and_server(replay, tmp_path):
    server = replay([(200, _r06_for_query, 1.5)])
    settings = _settings(tmp_path, server.url, "timeout_seconds = 0.3\nmax_retries = 1")

    with pytest.raises(
        PrometheusError,
        match=rf"source 'checkout': query 'histogram_quantile\(0\.99, .*' on {server.url} "
        r"failed after 2 attempts: no response within timeout_seconds=0\.3",
    ):
        read_prometheus(settings.sources[0])
    assert len(server.requests) == 2


def test_bad_request_not_retried(replay, tmp_path):
    bad = {"status": "error", "errorType": "bad_data", "error": 'invalid parameter "query"'}
    server = replay([(400, bad, 0.0)])
    settings = _settings(tmp_path, server.url)

    with pytest.raises(PrometheusError, match=r"failed: HTTP 400 bad_data: invalid parameter"):
        read_prometheus(settings.sources[0])
    assert len(server.requests) == 1


def test_refused_connection_names_server(replay, tmp_path):
    server = replay([(200, _r06_for_query, 0.0)])
    url = server.url
    server.shutdown()
    server.server_close()
    settings = _settings(tmp_path, url, "max_retries = 1")

    with pytest.raises(
        PrometheusError, match=rf"on {url} failed after 2 attempts: connection failed"
    ):
        read_prometheus(settings.sources[0])


def test_not_prometheus_response(replay, tmp_path):
    server = replay([(200, ["not", "an", "api", "response"], 0.0)])
    settings = _settings(tmp_path, server.url)

    with pytest.raises(PrometheusError, match="not a Prometheus API response"):
        read_prometheus(settings.sources[0])


def test_requests_cover_range_on_step_grid(replay, tmp_path):
    server = replay(
        [(200, {"status": "success", "data": {"resultType": "matrix", "result": []}}, 0.0)]
    )
    settings = _settings(tmp_path, server.url, "max_points_per_request = 50")

    read_prometheus(settings.sources[0])

    # 120 points from 01:00 to 02:59 at 60 s: 50, 50 and 20 per query, no overlap.
    windows = [(r["start"][0], r["end"][0], r["step"][0]) for r in server.requests[:3]]
    assert windows == [
        ("1780362000.000", "1780364940.000", "60.000"),
        ("1780365000.000", "1780367940.000", "60.000"),
        ("1780368000.000", "1780369140.000", "60.000"),
    ]
    assert len(server.requests) == 6


def test_chunks_share_no_time():
    chunks = list(chunk_ranges(0, 25, 1, 11))

    assert chunks == [(0, 10), (11, 21), (22, 25)]
