"""Lead times measured from stored scores, and the printed tables."""

from __future__ import annotations

import pandas as pd
import pytest

from predictor.report import lead_time_table, lead_times, risk_table
from predictor.store import RiskStore
from predictor.telemetry import LabeledFailure

START = pd.Timestamp("2024-01-01T00:00Z")


def _store(tmp_path, levels: list[str]) -> RiskStore:
    store = RiskStore(f"sqlite:///{tmp_path / 'risk.db'}")
    times = pd.date_range(START, periods=len(levels), freq="5min")
    store.write_scores(
        pd.DataFrame(
            {
                "component": "node-1",
                "scored_at": times,
                "risk": [0.9 if level in ("high", "critical") else 0.1 for level in levels],
                "level": levels,
                "model_version": "predictor-fleet/1",
                "drivers": [[{"metric": "gpu_temp", "contribution": 0.8}]] * len(levels),
            }
        )
    )
    return store


def _failure(minutes: int, window_minutes: int = 60) -> LabeledFailure:
    failure_time = START + pd.Timedelta(minutes=minutes)
    return LabeledFailure(
        component="node-1",
        failure_time=failure_time,
        window_start=failure_time - pd.Timedelta(minutes=window_minutes),
        window_end=failure_time + pd.Timedelta(minutes=window_minutes),
    )


def test_lead_time_is_first_warning_in_window(tmp_path):
    levels = ["normal"] * 10 + ["high", "critical", "critical"] + ["normal"] * 10
    store = _store(tmp_path, levels)

    (result,) = lead_times(store, [_failure(minutes=90)])

    assert result.first_warning == START + pd.Timedelta(minutes=50)
    assert result.lead == pd.Timedelta(minutes=40)
    assert result.describe() == "warned 40m before"


def test_warning_outside_window_does_not_count(tmp_path):
    levels = ["high"] * 3 + ["normal"] * 40
    store = _store(tmp_path, levels)

    (result,) = lead_times(store, [_failure(minutes=180)])

    assert result.first_warning is None
    assert result.describe() == "missed"


def test_detection_after_failure_is_late(tmp_path):
    levels = ["normal"] * 20 + ["critical"] * 3
    store = _store(tmp_path, levels)

    (result,) = lead_times(store, [_failure(minutes=90)])

    assert result.lead is None
    assert result.describe() == "late by 10m"


def test_failure_before_first_score_is_not_scored(tmp_path):
    store = _store(tmp_path, ["normal"] * 5)
    failure = _failure(minutes=-30)

    (result,) = lead_times(store, [failure])

    assert not result.scored
    assert result.describe() == "in training data, not scored"


@pytest.mark.parametrize("text", ["node-1", "critical", "gpu_temp (anomaly 0.80)"])
def test_risk_table_lists_latest_score(tmp_path, text):
    store = _store(tmp_path, ["normal", "critical"])

    assert text in risk_table(store)


def test_lead_time_table_has_one_line_per_failure(tmp_path):
    store = _store(tmp_path, ["normal"] * 10 + ["high"] * 3)
    results = lead_times(store, [_failure(minutes=60), _failure(minutes=300)])

    lines = lead_time_table(results).splitlines()

    assert len(lines) == 4
    assert "warned 10m before" in lines[2]
    # The newest score is at 01:00, before the second failure at 05:00.
    assert "after the newest score" in lines[3]


def test_failure_after_newest_score_is_not_missed(tmp_path):
    store = _store(tmp_path, ["normal"] * 10)

    (result,) = lead_times(store, [_failure(minutes=120)])

    assert not result.scored_through
    assert result.describe() == "after the newest score, not scored yet"
