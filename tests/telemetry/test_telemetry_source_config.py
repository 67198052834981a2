"""Settings of the Prometheus and OpenMetrics sources: errors name the key and value."""

from __future__ import annotations

import pandas as pd
import pytest

from predictor.config import load_settings
from predictor.exceptions import ConfigError
from predictor.telemetry.prometheus import evaluation_range
from predictor.telemetry.series import SeriesMapping

PROMETHEUS = """
[[sources]]
name = "p"
format = "prometheus"
url = "http://127.0.0.1:9090"
step_seconds = 30
"""
QUERY = '\n[[sources.queries]]\nquery = "up"\n'


def _load(tmp_path, text: str):
    path = tmp_path / "predictor.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, environ={"PREDICTOR_HOME": str(tmp_path / "home")})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            PROMETHEUS.replace('url = "http://127.0.0.1:9090"\n', "") + QUERY,
            r"sources\[0\]\.url: expected the server's base URL",
        ),
        (PROMETHEUS, r"sources\[0\]\.queries: expected at least one \[\[sources\.queries\]\]"),
        (
            PROMETHEUS.replace("step_seconds = 30\n", "") + QUERY,
            r"sources\[0\]\.step_seconds: expected a positive number of seconds",
        ),
        (
            PROMETHEUS + "max_points_per_request = 20000\n" + QUERY,
            r"max_points_per_request: expected an integer in \[2, 11000\].*got 20000",
        ),
        (
            PROMETHEUS + '\n[[sources.queries]]\nmetric = "x"\n',
            r"sources\[0\]\.queries\[0\]: .*missing 1 required positional argument: 'query'",
        ),
        (
            PROMETHEUS + QUERY + "raw_counters = true\n",
            r"sources\[0\]\.queries\[0\]: unknown key 'raw_counters'",
        ),
        (
            PROMETHEUS + QUERY + 'raw_counter = "yes"\n',
            r"sources\[0\]\.queries\[0\]\.raw_counter: expected true or false, got 'yes'",
        ),
        (
            '[[sources]]\nname = "a"\nformat = "long"\n',
            r"sources\[0\]\.path: required for format 'long'",
        ),
        (
            '[[components]]\nname = "g"\nmetrics = ["a"]\nkey_metrics = ["b"]\n',
            r"components\[0\]\.key_metrics: 'b' is not in the component's metrics \['a'\]",
        ),
    ],
)
def test_invalid_source_settings_name_the_key(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        _load(tmp_path, text)


def test_range_aligned_to_step(tmp_path):
    settings = _load(
        tmp_path,
        PROMETHEUS + 'start = "2026-11-01T00:00:10Z"\nend = "2026-11-01T00:10:50+00:00"\n' + QUERY,
    )

    start_ns, end_ns, step_ns = evaluation_range(settings.sources[0])

    assert step_ns == 30 * 10**9
    assert (start_ns, end_ns) == (
        1793491230 * 10**9,  # 00:00:30, the first multiple of 30 s at or after 00:00:10
        1793491830 * 10**9,  # 00:10:30, the last one at or before 00:10:50
    )


def test_range_defaults_to_lookback(tmp_path):
    settings = _load(tmp_path, PROMETHEUS + "lookback_minutes = 10\n" + QUERY)
    now = pd.Timestamp("2026-11-01T01:00:00Z")

    start_ns, end_ns, _ = evaluation_range(settings.sources[0], now=now)

    assert end_ns == now.value
    assert end_ns - start_ns == 10 * 60 * 10**9


def test_range_needs_utc_offset(tmp_path):
    settings = _load(tmp_path, PROMETHEUS + 'start = "2026-11-01 00:00"\n' + QUERY)

    with pytest.raises(ConfigError, match=r"start must be an ISO 8601 time with a UTC offset"):
        evaluation_range(settings.sources[0])


def test_component_regex_needs_one_group():
    with pytest.raises(ConfigError, match=r"expected exactly one group, got 2"):
        SeriesMapping(metric="x", component_regex="(a)(b)")


def test_mapping_rejects_series_without_label():
    mapping = SeriesMapping(metric="gpu{gpu}_temp", component_label="Hostname")

    assert mapping.map({"Hostname": "n1", "gpu": "3"}) == ("n1", "gpu3_temp", None)
    component, _, reason = mapping.map({"__name__": "t", "gpu": "3"})
    assert component == 't{gpu="3"}'
    assert reason.endswith("['Hostname']")
