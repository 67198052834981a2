"""Round trip through a real Prometheus server.

Known series are written as OpenMetrics, loaded into a fresh TSDB with ``promtool tsdb
create-blocks-from openmetrics``, served by ``prometheus`` on 127.0.0.1, and ingested
through ``/api/v1/query_range``. Every stored value is compared with the value the
server must return for what was loaded.

Samples sit 5 seconds after the evaluation grid (multiples of 15 s), so the value at an
evaluation time t is the newest sample in (t - 5 min, t] under either of the look-back
boundary rules that Prometheus versions use.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from predictor.config import load_settings
from predictor.telemetry import TelemetryStore, ingest_source
from predictor.telemetry.prometheus import PrometheusError, query_range, read_prometheus
from predictor.telemetry.series import (
    REASON_INF_SAMPLE,
    REASON_NAN_SAMPLE,
    REASON_NO_PREVIOUS_SAMPLE,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gpu-fleet.toml"
STEP_SECONDS = 15
LOOKBACK_SECONDS = 300
# More points per series than one request may return (11,000), so the range is chunked.
N_SAMPLES = 12_100
OFFSET_SECONDS = 5
BUCKETS = (0.1, 0.5, 1.0, 2.5)
QUANTILE = 0.9

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="the prometheus and promtool binaries are not installed "
    "(Debian package 'prometheus'; .ci/run installs it)",
)


def _grid_start() -> int:
    """The first evaluation time: about 60 hours ago, on the 15 s grid."""
    now = int(time.time())
    return (now - 60 * 3600) // STEP_SECONDS * STEP_SECONDS


def _temperature(gpu: int, i: int) -> str:
    if gpu == 0 and i in (100, 5000):
        return "NaN"
    if gpu == 0 and i == 7000:
        return "+Inf"
    if gpu == 1 and i == 9000:
        return "-Inf"
    return f"{40 + 20 * math.sin(i / 50 + gpu) + (i % 7) * 0.125:.3f}"


def _counter(i: int) -> int:
    # A process restart at sample 6000 resets the counter.
    return 3 * i + (i % 5) if i < 6000 else 2 * (i - 6000) + (i % 3)


def _buckets(i: int) -> list[int]:
    if i % 1000 == 999:
        return [0, 0, 0, 0, 0]  # no requests: histogram_quantile returns NaN
    base = 1 + i % 11
    return [base, 2 * base + i % 3, 3 * base + 1, 3 * base + 4, 3 * base + 4 + i % 2]


def _waiting(i: int) -> float:
    return float(i % 13)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory) -> dict:
    """Write and load the series; return the sample times and values by series."""
    folder = tmp_path_factory.mktemp("prometheus")
    start = _grid_start()
    times = [start + OFFSET_SECONDS + STEP_SECONDS * i for i in range(N_SAMPLES)]
    lines: list[str] = ["# TYPE DCGM_FI_DEV_GPU_TEMP gauge"]
    for host in ("gpu-node-1", "gpu-node-2"):
        for gpu in (0, 1):
            for i, t in enumerate(times):
                if host == "gpu-node-2" and 3000 <= i < 3040:
                    continue  # a 10-minute gap in one series
                lines.append(
                    f'DCGM_FI_DEV_GPU_TEMP{{Hostname="{host}",gpu="{gpu}"}} '
                    f"{_temperature(gpu, i)} {t}"
                )
    lines.append("# TYPE vllm:request_success counter")
    lines += [
        f'vllm:request_success_total{{instance="gpu-node-1:8000"}} {_counter(i)} {t}'
        for i, t in enumerate(times)
    ]
    lines.append("# TYPE vllm:time_to_first_token_seconds histogram")
    for i, t in enumerate(times):
        counts = _buckets(i)
        for bound, count in zip([*map(str, BUCKETS), "+Inf"], counts, strict=True):
            lines.append(
                f'vllm:time_to_first_token_seconds_bucket{{instance="gpu-node-1:8000",'
                f'le="{bound}"}} {count} {t}'
            )
        lines.append(
            f'vllm:time_to_first_token_seconds_count{{instance="gpu-node-1:8000"}} '
            f"{counts[-1]} {t}"
        )
        lines.append(f'vllm:time_to_first_token_seconds_sum{{instance="gpu-node-1:8000"}} 1.5 {t}')
    # The pod label changes halfway: a restarted pod is a new series.
    lines.append("# TYPE vllm:num_requests_waiting gauge")
    half = N_SAMPLES // 2
    for pod, indices in (("a", range(half)), ("b", range(half, N_SAMPLES))):
        lines += [
            f'vllm:num_requests_waiting{{instance="gpu-node-1:8000",pod="{pod}"}} '
            f"{_waiting(i)} {times[i]}"
            for i in indices
        ]
    lines.append("# EOF")
    source = folder / "series.om"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")

    data = folder / "data"
    subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return {"folder": folder, "data": data, "start": start, "times": times}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(loaded) -> Iterator[str]:
    """Run prometheus on the loaded TSDB at 127.0.0.1; yield its base URL."""
    config = loaded["folder"] / "prometheus.yml"
    config.write_text("global: {}\n", encoding="utf-8")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (loaded["folder"] / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={loaded['data']}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=10y",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"prometheus did not start; see {log.name}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _settings(tmp_path: Path, url: str, start: int, end: int, queries: str):
    config = tmp_path / "predictor.toml"
    config.write_text(
        f"""
[[sources]]
name = "fleet"
format = "prometheus"
url = "{url}"
start = "{pd.Timestamp(start, unit="s", tz="UTC").isoformat()}"
end = "{pd.Timestamp(end, unit="s", tz="UTC").isoformat()}"
step_seconds = {STEP_SECONDS}
max_retries = 0
{queries}
""",
        encoding="utf-8",
    )
    return load_settings(config, environ={"PREDICTOR_HOME": str(tmp_path / "home")})


def _instant(times: np.ndarray, values: list, t: int):
    """The value Prometheus returns at t: the newest sample in (t - 5 min, t], or None."""
    index = int(np.searchsorted(times, t, side="right")) - 1
    if index < 0 or times[index] <= t - LOOKBACK_SECONDS:
        return None
    return values[index]


def _evaluation_times(loaded) -> list[int]:
    # From the first grid point after the first sample to the one after the last sample.
    return [loaded["start"] + STEP_SECONDS * k for k in range(1, N_SAMPLES + 1)]


def _stored(settings) -> pd.DataFrame:
    rows = TelemetryStore(settings.telemetry_dir).read()
    rows["t"] = rows["timestamp"].astype("int64") // 10**9
    return rows


def test_gauges_round_trip_every_value(loaded, server, tmp_path, caplog):
    evaluations = _evaluation_times(loaded)
    settings = _settings(
        tmp_path,
        server,
        evaluations[0],
        evaluations[-1],
        """
[[sources.queries]]
query = "DCGM_FI_DEV_GPU_TEMP"
metric = "gpu{gpu}_temp_celsius"
component_label = "Hostname"
""",
    )

    with caplog.at_level(logging.DEBUG, logger="predictor.telemetry.prometheus"):
        summary = ingest_source(settings.sources[0], settings)
    stored = _stored(settings)

    expected_rows, expected_reasons = [], {REASON_NAN_SAMPLE: 0, REASON_INF_SAMPLE: 0}
    for host in ("gpu-node-1", "gpu-node-2"):
        for gpu in (0, 1):
            indices = [
                i for i in range(N_SAMPLES) if not (host == "gpu-node-2" and 3000 <= i < 3040)
            ]
            sample_times = np.array([loaded["times"][i] for i in indices])
            values = [_temperature(gpu, i) for i in indices]
            for t in evaluations:
                value = _instant(sample_times, values, t)
                if value in ("NaN",):
                    expected_reasons[REASON_NAN_SAMPLE] += 1
                elif value in ("+Inf", "-Inf"):
                    expected_reasons[REASON_INF_SAMPLE] += 1
                elif value is not None:
                    expected_rows.append((host, f"gpu{gpu}_temp_celsius", t, float(value)))
    expected = pd.DataFrame(expected_rows, columns=["component", "metric", "t", "value"])
    actual = stored[["component", "metric", "t", "value"]].reset_index(drop=True)
    expected = expected.sort_values(["component", "metric", "t"]).reset_index(drop=True)

    assert summary.rows_read == len(expected) + sum(expected_reasons.values())
    assert summary.reasons == expected_reasons
    assert (summary.written, summary.duplicates) == (len(expected), 0)
    pd.testing.assert_frame_equal(actual, expected, check_exact=True, check_dtype=False)
    # 12,100 points per series need two requests of at most 10,000.
    assert "returned 4 series in 2 requests" in caplog.text
    # The 40 missing samples repeat the last value for 19 evaluations (5 minutes of
    # look-back) and leave 21 evaluations without a row; 3 samples are NaN or infinite.
    node2 = stored[
        (stored["component"] == "gpu-node-2") & (stored["metric"] == "gpu0_temp_celsius")
    ]
    assert len(node2) == N_SAMPLES - 21 - 3


def test_counter_histogram_and_label_change(loaded, server, tmp_path):
    evaluations = _evaluation_times(loaded)
    settings = _settings(
        tmp_path,
        server,
        evaluations[0],
        evaluations[-1],
        f"""
component_label = "instance"
component_regex = "^([^:]+)"

[[sources.queries]]
query = "vllm:request_success_total"
metric = "vllm_requests_per_second"
raw_counter = true

[[sources.queries]]
query = "histogram_quantile({QUANTILE}, vllm:time_to_first_token_seconds_bucket)"
metric = "vllm_ttft_p90_seconds"

[[sources.queries]]
query = "max by (instance) (vllm:num_requests_waiting)"
metric = "vllm_requests_waiting"
""",
    )

    summary = ingest_source(settings.sources[0], settings)
    stored = _stored(settings).set_index(["metric", "t"])["value"]
    times = np.array(loaded["times"])

    # Raw counter: the rate between consecutive evaluations, with the reset corrected.
    counter_values = [_counter(i) for i in range(N_SAMPLES)]
    counter = [_instant(times, counter_values, t) for t in evaluations]
    for k in range(1, len(evaluations)):
        increase = counter[k] - counter[k - 1] if counter[k] >= counter[k - 1] else counter[k]
        assert stored[("vllm_requests_per_second", evaluations[k])] == pytest.approx(
            increase / STEP_SECONDS, abs=1e-12
        )
    # Histogram quantile, computed from the loaded buckets as PromQL does.
    n_nan = 0
    bucket_values = [_buckets(i) for i in range(N_SAMPLES)]
    for t in evaluations:
        counts = _instant(times, bucket_values, t)
        expected = _histogram_quantile(QUANTILE, counts)
        if math.isnan(expected):
            n_nan += 1
            assert ("vllm_ttft_p90_seconds", t) not in stored.index
        else:
            assert stored[("vllm_ttft_p90_seconds", t)] == pytest.approx(expected, rel=1e-12)
    # Label change: both pods' samples, merged by max, give one continuous series.
    halves = (range(N_SAMPLES // 2), range(N_SAMPLES // 2, N_SAMPLES))
    pods = [(times[list(half)], [_waiting(i) for i in half]) for half in halves]
    for t in evaluations:
        present = [_instant(pod_times, pod_values, t) for pod_times, pod_values in pods]
        assert stored[("vllm_requests_waiting", t)] == max(v for v in present if v is not None)

    assert summary.components == ["gpu-node-1"]
    assert summary.reasons == {REASON_NO_PREVIOUS_SAMPLE: 1, REASON_NAN_SAMPLE: n_nan}
    assert summary.written == 3 * len(evaluations) - 1 - n_nan


def test_promql_error_names_query_and_server(server, tmp_path):
    start = _grid_start()
    settings = _settings(
        tmp_path,
        server,
        start,
        start + 600,
        """
[[sources.queries]]
query = "rate(DCGM_FI_DEV_GPU_TEMP[5m]"
""",
    )

    with pytest.raises(
        PrometheusError,
        match=rf"source 'fleet': query 'rate\(DCGM_FI_DEV_GPU_TEMP\[5m\]' on {server} failed: "
        r"HTTP 400 bad_data: .*parse error",
    ):
        read_prometheus(settings.sources[0])


def test_one_request_over_limit_is_rejected(loaded, server, tmp_path):
    """The server's own limit, which the chunking keeps below."""
    evaluations = _evaluation_times(loaded)
    settings = _settings(
        tmp_path,
        server,
        evaluations[0],
        evaluations[-1],
        """
max_points_per_request = 11000

[[sources.queries]]
query = "DCGM_FI_DEV_GPU_TEMP"
""",
    )
    source = settings.sources[0]
    step_ns = STEP_SECONDS * 10**9

    with (
        requests.Session() as session,
        pytest.raises(PrometheusError, match="exceeded maximum resolution of 11,000 points"),
    ):
        query_range(
            source,
            session,
            "DCGM_FI_DEV_GPU_TEMP",
            evaluations[0] * 10**9,
            evaluations[-1] * 10**9,
            step_ns,
        )


def test_example_queries_run_on_server(loaded, server, tmp_path):
    """Every PromQL query of the GPU-fleet example parses and runs on the real server."""
    example = load_settings(EXAMPLE, environ={"PREDICTOR_HOME": str(tmp_path)})
    evaluations = _evaluation_times(loaded)
    source = dataclasses.replace(
        example.sources[0],
        url=server,
        max_retries=0,
        start=pd.Timestamp(evaluations[0], unit="s", tz="UTC").isoformat(),
        end=pd.Timestamp(evaluations[100], unit="s", tz="UTC").isoformat(),
    )

    raw = read_prometheus(source)

    # The loaded data has the GPU temperature, the waiting requests and the
    # time-to-first-token buckets; the other queries select no series.
    assert set(raw.rows["metric"]) == {
        "gpu_temp_max_celsius",
        "vllm_requests_waiting",
        "vllm_ttft_p95_seconds",
    }
    assert set(raw.rows["component"]) == {"gpu-node-1", "gpu-node-2", "gpu-node-1:8000"}


def _histogram_quantile(q: float, counts: list[int]) -> float:
    """PromQL's histogram_quantile over cumulative bucket counts (Prometheus 2.x rules)."""
    bounds = [*BUCKETS, math.inf]
    total = counts[-1]
    if total == 0:
        return math.nan
    rank = q * total
    b = next(i for i, count in enumerate(counts) if count >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    start = 0.0 if b == 0 else bounds[b - 1]
    count = counts[b] - (counts[b - 1] if b > 0 else 0)
    below = counts[b - 1] if b > 0 else 0
    return start + (bounds[b] - start) * (rank - below) / count
