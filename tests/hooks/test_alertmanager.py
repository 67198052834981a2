"""Round trip through a real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request

import pandas as pd
import pytest

from predictor.config import HookConfig
from predictor.hooks.alertmanager import sync_alerts

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")

pytestmark = pytest.mark.skipif(
    BINARY is None,
    reason="prometheus-alertmanager is not installed (apt-get install prometheus-alertmanager)",
)

CONFIG = """
route:
  receiver: devnull
receivers:
  - name: devnull
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.fixture
def alertmanager(tmp_path):
    config = tmp_path / "alertmanager.yml"
    config.write_text(CONFIG, encoding="utf-8")
    port = _free_port()
    log = tmp_path / "alertmanager.log"
    log_file = log.open("wb")
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={config}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log_file,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            _get(f"{url}/api/v2/status")
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                process.wait(timeout=10)
                log_file.close()
                stderr = log.read_text(encoding="utf-8", errors="replace")
                pytest.fail(f"alertmanager did not start on {url}: {stderr[-2000:]}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)
    log_file.close()


def _scores(t, levels, risk):
    return pd.DataFrame(
        {
            "component": [f"gpu-{i}" for i in range(len(levels))],
            "group_name": "pool-a",
            "scored_at": t,
            "risk": risk,
            "level": levels,
            "model_version": "3",
            "time_to_threshold_seconds": [1200.0] + [None] * (len(levels) - 1),
            "drivers": [[{"metric": "gpu_temp_celsius", "contribution": 0.7}]] * len(levels),
        }
    )


def _alerts(url, **params):
    query = "&".join(f"{key}={value}" for key, value in params.items())
    alerts = _get(f"{url}/api/v2/alerts?{query}&filter=predictor_hook%3D%22am%22")
    return {alert["labels"]["component"]: alert for alert in alerts}


def test_alerts_fire_renew_and_resolve(alertmanager, store):
    hook = HookConfig(
        name="am",
        type="alertmanager",
        url=alertmanager,
        on_levels=("high", "critical"),
        resolve_timeout_minutes=10.0,
    )
    t0 = pd.Timestamp.now(tz="UTC").floor("min")
    store.write_scores(_scores(t0, ["critical", "high", "normal"], [0.93, 0.75, 0.1]))

    first = sync_alerts(hook, store)

    assert (first.ok, first.firing, first.resolved) == (True, 2, 0)
    active = _alerts(alertmanager, active="true")
    assert sorted(active) == ["gpu-0", "gpu-1"]
    critical = active["gpu-0"]
    assert critical["labels"] == {
        "alertname": "PredictorFailureRisk",
        "component": "gpu-0",
        "group": "pool-a",
        "level": "critical",
        "predictor_hook": "am",
    }
    assert critical["annotations"]["risk"] == "0.9300"
    assert critical["annotations"]["drivers"] == "gpu_temp_celsius (0.70)"
    assert critical["annotations"]["time_to_threshold_seconds"] == "1200"
    assert critical["status"]["state"] == "active"
    first_end = pd.Timestamp(critical["endsAt"])
    assert (
        pd.Timedelta(minutes=9)
        < first_end - pd.Timestamp.now(tz="UTC")
        <= pd.Timedelta(minutes=10)
    )

    # The next run: gpu-0 holds critical, so its endsAt is renewed; gpu-1 recovers.
    time.sleep(1.1)
    store.write_scores(
        _scores(t0 + pd.Timedelta(minutes=5), ["critical", "normal", "normal"], [0.95, 0.2, 0.1])
    )
    second = sync_alerts(hook, store)

    assert (second.ok, second.firing, second.resolved) == (True, 1, 1)
    active = _alerts(alertmanager, active="true")
    assert sorted(active) == ["gpu-0"]
    assert pd.Timestamp(active["gpu-0"]["endsAt"]) > first_end
    assert active["gpu-0"]["startsAt"] == critical["startsAt"]
    assert active["gpu-0"]["annotations"]["risk"] == "0.9500"
    every = _get(f"{alertmanager}/api/v2/alerts?filter=predictor_hook%3D%22am%22")
    assert sorted(alert["labels"]["component"] for alert in every) == ["gpu-0"]

    # gpu-0 recovers too: nothing is left active.
    store.write_scores(_scores(t0 + pd.Timedelta(minutes=10), ["normal"] * 3, [0.1] * 3))
    third = sync_alerts(hook, store)

    assert (third.ok, third.firing, third.resolved) == (True, 0, 1)
    assert _alerts(alertmanager, active="true") == {}


def test_dry_run_posts_nothing(alertmanager, store):
    hook = HookConfig(name="am", type="alertmanager", url=alertmanager, dry_run=True)
    store.write_scores(_scores(pd.Timestamp.now(tz="UTC"), ["critical"], [0.93]))

    result = sync_alerts(hook, store)

    assert (result.ok, result.firing, result.detail) == (True, 1, "dry run: not sent")
    assert _get(f"{alertmanager}/api/v2/alerts") == []


def test_unreachable_alertmanager_reported(store):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = HookConfig(
        name="am", type="alertmanager", url=f"http://127.0.0.1:{port}", timeout_seconds=2.0
    )
    store.write_scores(_scores(pd.Timestamp.now(tz="UTC"), ["critical"], [0.93]))

    result = sync_alerts(hook, store)

    assert result.ok is False
    assert result.detail.startswith("request failed")
