"""Guardrails on scores from the real pipeline: NAB telemetry, an outage, then a silence."""

from __future__ import annotations

import pandas as pd
import pytest

from predictor import pipeline
from predictor.config import load_settings
from tests.test_pipeline import CONFIG as PIPELINE_CONFIG
from tests.test_pipeline import NAB_FILE

# The single-component NAB configuration of the pipeline tests, plus two hooks.
CONFIG = (
    PIPELINE_CONFIG
    + """
[[hooks]]
name = "drain"
type = "webhook"
url = "{url}"
on_levels = ["normal", "elevated", "high", "critical"]
cooldown_minutes = 0

[[hooks]]
name = "stale"
type = "webhook"
url = "{stale_url}"
kind = "telemetry_stale"
"""
)


@pytest.mark.slow
def test_pipeline_silence_fires_stale_hook(sample_data, tmp_path, isolated_env, http_receiver):
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
    config = tmp_path / "predictor.toml"
    stale_url = http_receiver.url.replace("/hook", "/stale")
    config.write_text(
        CONFIG.format(path=csv, url=http_receiver.url, stale_url=stale_url), encoding="utf-8"
    )
    settings = load_settings(config)
    pipeline.ingest(settings)
    pipeline.train(settings)
    pipeline.score(settings)
    drained = [r["json"] for r in http_receiver.requests if r["path"] == "/hook"]
    assert [payload["level"] for payload in drained][-1] == "critical"

    # Telemetry stops: three hours later the component is unknown.
    end = pipeline.open_telemetry(settings).last_timestamp("ec2-latency")
    pipeline.score(settings, until=end + pd.Timedelta(hours=3))

    store = pipeline.open_risk_store(settings)
    assert store.last_score("ec2-latency")["level"] == "unknown"
    stale = [r["json"] for r in http_receiver.requests if r["path"] == "/stale"]
    scores = store.scores("ec2-latency")
    entries = scores[(scores["level"] == "unknown") & (scores["previous_level"] != "unknown")]
    # The real series has gaps of its own before the outage; each one is an entry too.
    assert len(stale) == len(entries) >= 1
    assert {(p["event"], p["level"]) for p in stale} == {("telemetry_stale", "unknown")}
    assert stale[-1]["previous_level"] == "critical"
    after = [r["json"] for r in http_receiver.requests if r["path"] == "/hook"]
    assert after == drained
    calls = store.hook_calls(hook="drain")
    assert "unknown" not in set(calls["level"])
