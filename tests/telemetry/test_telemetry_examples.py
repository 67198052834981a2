"""The shipped GPU-fleet example configuration loads and is consistent."""

from __future__ import annotations

from pathlib import Path

from predictor.config import load_settings
from predictor.telemetry.schema import is_valid_name

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gpu-fleet.toml"


def test_gpu_fleet_example_loads(tmp_path):
    settings = load_settings(EXAMPLE, environ={"PREDICTOR_HOME": str(tmp_path)})

    (source,) = settings.sources
    produced = {query.metric for query in source.queries}
    assert source.format == "prometheus"
    assert source.step_seconds == settings.model.step_seconds
    assert all(is_valid_name(metric) for metric in produced)
    assert {threshold.metric for threshold in settings.thresholds} <= produced
    for component in settings.components:
        assert is_valid_name(component.name)
        assert set(component.key_metrics or ()) <= produced
    assert {component.group for component in settings.components} == {"pool-a", "pool-a-vllm"}


def test_gpu_fleet_example_covers_dcgm_and_vllm(tmp_path):
    settings = load_settings(EXAMPLE, environ={"PREDICTOR_HOME": str(tmp_path)})
    queries = " ".join(query.query for query in settings.sources[0].queries)

    for name in (
        "DCGM_FI_DEV_GPU_TEMP",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_XID_ERRORS",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
    ):
        assert name in queries
