from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from predictor.hooks import SCHEMA_VERSION, HookEvent, level_entries


def _event(**changes):
    values = {
        "component": "gpu-1",
        "group": "pool-a",
        "level": "critical",
        "previous_level": "high",
        "risk": np.float64(0.93),
        "scored_at": pd.Timestamp("2024-05-01 14:00", tz="Europe/Berlin"),
        "horizon_minutes": 60,
        "drivers": [{"metric": "gpu_temp_celsius", "contribution": np.float32(0.5)}],
        "time_to_threshold_seconds": 1200.0,
        "model_version": "3",
    }
    values.update(changes)
    return HookEvent(**values)


def test_event_scored_at_converted_to_utc():
    event = _event()

    assert event.scored_at == pd.Timestamp("2024-05-01 12:00", tz="UTC")
    assert str(event.scored_at.tz) == "UTC"


def test_event_naive_scored_at_rejected():
    with pytest.raises(ValueError, match="scored_at: expected a tz-aware timestamp"):
        _event(scored_at=pd.Timestamp("2024-05-01 12:00"))


def test_idempotency_key_names_transition_and_time():
    event = _event()

    assert event.idempotency_key == "gpu-1:high->critical:2024-05-01T12:00:00+00:00"


def test_payload_is_plain_json():
    payload = _event().to_payload()
    decoded = json.loads(json.dumps(payload, allow_nan=False))

    assert decoded["schema_version"] == SCHEMA_VERSION == "1"
    assert decoded["scored_at"] == "2024-05-01T12:00:00+00:00"
    assert decoded["risk"] == pytest.approx(0.93)
    assert decoded["drivers"] == [{"metric": "gpu_temp_celsius", "contribution": 0.5}]
    assert decoded["idempotency_key"] == "gpu-1:high->critical:2024-05-01T12:00:00+00:00"
    assert decoded["group"] == "pool-a"
    assert decoded["horizon_minutes"] == 60.0
    assert decoded["time_to_threshold_seconds"] == 1200.0


def test_payload_unknown_risk_is_null():
    payload = _event(risk=float("nan"), time_to_threshold_seconds=None, previous_level=None)

    decoded = json.loads(json.dumps(payload.to_payload(), allow_nan=False))

    assert decoded["risk"] is None
    assert decoded["time_to_threshold_seconds"] is None
    assert decoded["previous_level"] is None


def test_level_entries_only_changes_in_time_order():
    t0 = pd.Timestamp("2024-05-01 12:00", tz="UTC")
    scores = pd.DataFrame(
        {
            "component": ["gpu-2", "gpu-1", "gpu-1", "gpu-1"],
            "group_name": [None, "pool-a", "pool-a", "pool-a"],
            "scored_at": [t0 + pd.Timedelta(minutes=10), t0, t0 + pd.Timedelta(minutes=5), t0],
            "risk": [0.2, 0.9, 0.91, 0.9],
            "level": ["normal", "critical", "critical", "critical"],
            "previous_level": [None, "high", "critical", "high"],
            "model_version": ["3", "3", "3", "3"],
            "drivers": [[], [{"metric": "temp", "contribution": 1.0}], [], []],
        }
    )

    events = level_entries(scores, horizon_minutes=60)

    assert [(e.component, e.previous_level, e.level) for e in events] == [
        ("gpu-1", "high", "critical"),
        ("gpu-1", "high", "critical"),
        ("gpu-2", None, "normal"),
    ]
    assert events[0].drivers == [{"metric": "temp", "contribution": 1.0}]
    assert events[0].group == "pool-a"
    assert events[2].group is None


def test_level_entries_missing_column_rejected():
    with pytest.raises(ValueError, match=r"missing columns \['previous_level'\]"):
        level_entries(
            pd.DataFrame(columns=["component", "scored_at", "risk", "level", "model_version"]),
            horizon_minutes=60,
        )


def test_payload_says_whether_risk_is_calibrated():
    uncalibrated = _event().to_payload()
    calibrated = _event(risk=0.12, calibrated=True, raw_risk=np.float64(0.93)).to_payload()

    assert uncalibrated["calibrated"] is False
    assert uncalibrated["raw_risk"] == pytest.approx(0.93)
    assert calibrated["calibrated"] is True
    assert calibrated["risk"] == pytest.approx(0.12)
    assert calibrated["raw_risk"] == pytest.approx(0.93)


def test_level_entries_carry_calibrated_flag():
    t0 = pd.Timestamp("2024-05-01 12:00", tz="UTC")
    scores = pd.DataFrame(
        {
            "component": ["gpu-1"],
            "scored_at": [t0],
            "risk": [0.3],
            "raw_risk": [0.9],
            "level": ["critical"],
            "previous_level": ["high"],
            "model_version": ["3"],
            "calibrated": [True],
        }
    )

    (event,) = level_entries(scores, horizon_minutes=60)

    assert event.calibrated is True
    assert event.raw_risk == pytest.approx(0.9)
    assert event.to_payload()["risk"] == pytest.approx(0.3)
