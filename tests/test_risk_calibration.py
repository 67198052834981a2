"""Calibrated risk on real NAB telemetry: fit from stored scores, publish, hooks."""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import pandas as pd
import pytest

from predictor import cli, pipeline
from predictor.config import load_settings
from predictor.exceptions import PredictorUserError
from predictor.risk_calibration import (
    CALIBRATION_FILE,
    MIN_POSITIVE_ROWS,
    failure_targets,
    fit_risk_calibration,
    load_risk_calibration,
)
from predictor.telemetry import LabeledFailure

NAB_FILE = "nab/realKnownCause/ec2_request_latency_system_failure.csv"
# The file runs from 2014-03-07 to 2014-03-21 03:41 with labeled failures on 03-14,
# 03-18 and 03-21; the first two lie before the cut-off, the third after it.
CUT = pd.Timestamp("2014-03-20 00:00", tz="UTC")

# NOTE: the model here averages the unweighted surprises (fusion = "mean") of the members
# that were the default when this test was written. With max fusion the out-of-time Brier
# score on this file was 0.0585 against 0.0493 for the base rate (0.0468 with the mean).
# With the default members iforest, knn, knn_log and channel, their default weights and the
# mean it is 0.0580. One failure in each half is too few for that check to hold for every
# detector setting, so this test pins the setting it was written against.
CONFIG = """
[model]
n_estimators = 30
members = ["iforest", "ecod", "knn", "pca", "robust_z", "channel"]
member_weights = {{}}
fusion = "mean"
horizon_minutes = 60

[[components]]
name = "ec2-latency"
group = "web"

[[sources]]
name = "ec2"
format = "nab"
path = "{data}/{nab_file}"
component = "ec2-latency"
metric = "latency_ms"
role = "split"
train_fraction = 0.15
{labels}

[[hooks]]
name = "record"
type = "command"
argv = ["{{python}}", "-c", "pass"]
on_levels = ["elevated", "high", "critical"]
cooldown_minutes = 0
"""

LABELS = """
labels_format = "nab"
labels_path = "{data}/nab/labels/combined_labels.json"
windows_path = "{data}/nab/labels/combined_windows.json"
"""


def _settings(sample_data, folder, *, labeled=True):
    labels = LABELS.format(data=sample_data) if labeled else ""
    config = folder / "predictor.toml"
    config.write_text(
        CONFIG.format(data=sample_data, nab_file=NAB_FILE, labels=labels), encoding="utf-8"
    )
    return load_settings(config)


@pytest.fixture(scope="module")
def calibrated(sample_data, tmp_path_factory):
    """Scores up to CUT, a calibration fitted at CUT, then scores after it (dry-run hooks)."""
    folder = tmp_path_factory.mktemp("calibrated")
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in list(os.environ):
            if name.startswith("PREDICTOR_") or name == "MLFLOW_TRACKING_URI":
                monkeypatch.delenv(name)
        monkeypatch.setenv("PREDICTOR_HOME", str(folder / "home"))
        monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        settings = _settings(sample_data, folder)
        pipeline.ingest(settings)
        pipeline.train(settings)
        pipeline.score(settings, CUT, dry_run=True)
        calibration = pipeline.calibrate(settings, CUT)
        pipeline.score(settings, dry_run=True)
        yield settings, calibration


@pytest.mark.slow
def test_calibration_saved_as_plain_json(calibrated):
    settings, calibration = calibrated
    path = settings.home / CALIBRATION_FILE

    state = json.loads(path.read_text(encoding="utf-8"))

    assert state["calibrator"]["method"] == "isotonic"
    assert all(isinstance(value, float) for value in state["calibrator"]["thresholds"])
    assert state["components"] == ["ec2-latency"]
    assert state["fitted_until"] == CUT.isoformat()
    assert state["horizon_minutes"] == 60.0
    assert state["n_failures"] == 2
    assert state["n_positive"] >= MIN_POSITIVE_ROWS
    assert state["run_id"] == calibration.run_id
    assert load_risk_calibration(path).to_dict() == calibration.to_dict()


@pytest.mark.slow
def test_calibration_logged_to_mlflow(calibrated):
    import mlflow

    settings, calibration = calibrated
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()

    run = client.get_run(calibration.run_id)
    artifacts = [item.path for item in client.list_artifacts(calibration.run_id, "calibration")]

    assert run.data.tags["predictor.stage"] == "calibrate"
    assert run.data.params["fitted_until"] == CUT.isoformat()
    assert run.data.metrics["n_positive"] == calibration.n_positive
    assert artifacts == [f"calibration/{CALIBRATION_FILE}"]


@pytest.mark.slow
def test_out_of_time_check_beats_base_rate(calibrated):
    _, calibration = calibrated
    check = calibration.out_of_time

    assert check is not None
    assert check["brier"] < check["brier_base_rate"]
    assert check["n_fit"] > 1000
    assert check["n_eval"] > 1000


@pytest.mark.slow
def test_flag_reaches_stored_rows(calibrated):
    settings, calibration = calibrated
    scores = pipeline.open_risk_store(settings).scores(component="ec2-latency")
    before = scores[scores["scored_at"] <= CUT]
    after = scores[scores["scored_at"] > CUT]

    assert len(before) > 1000
    assert len(after) > 100
    assert not before["calibrated"].any()
    assert after["calibrated"].all()
    np.testing.assert_allclose(before["raw_risk"], before["risk"])
    expected = calibration.calibrator.transform(after["raw_risk"].to_numpy())
    np.testing.assert_allclose(after["risk"], expected)


@pytest.mark.slow
def test_calibrated_risk_monotone_in_raw_risk(calibrated):
    settings, _ = calibrated
    scores = pipeline.open_risk_store(settings).scores(component="ec2-latency")
    after = scores[scores["calibrated"]].sort_values("raw_risk")

    assert after["raw_risk"].nunique() > 100
    assert (np.diff(after["risk"].to_numpy()) >= 0).all()
    assert after["risk"].between(0, 1).all()


@pytest.mark.slow
def test_flag_reaches_hook_payload(calibrated):
    settings, _ = calibrated
    calls = pipeline.open_risk_store(settings).hook_calls()
    before = calls[calls["scored_at"] <= CUT]
    after = calls[calls["scored_at"] > CUT]

    assert len(before) >= 1
    assert len(after) >= 1
    assert all(payload["calibrated"] is False for payload in before["payload"])
    assert all(payload["calibrated"] is True for payload in after["payload"])
    for payload in after["payload"]:
        assert payload["raw_risk"] is not None
        assert 0.0 <= payload["risk"] <= 1.0


@pytest.mark.slow
def test_out_of_time_check_ignores_evaluated_labels(calibrated):
    settings, calibration = calibrated
    store = pipeline.open_risk_store(settings)
    failures = pipeline.labeled_failures(settings)
    # An extra failure two hours before the cut-off lies in the evaluated later half.
    extra = LabeledFailure(
        "ec2-latency", CUT - pd.Timedelta(hours=2), CUT - pd.Timedelta(hours=3), CUT
    )
    changed = {"ec2-latency": [*failures["ec2-latency"], extra]}

    original = fit_risk_calibration(store, failures, CUT, 60.0).out_of_time
    modified = fit_risk_calibration(store, changed, CUT, 60.0).out_of_time

    assert original == calibration.out_of_time
    assert modified["base_rate"] == original["base_rate"]
    assert modified["n_fit"] == original["n_fit"]
    assert modified["brier_base_rate"] != original["brier_base_rate"]


@pytest.mark.slow
def test_calibrate_ignores_scores_after_cut(calibrated):
    settings, calibration = calibrated

    # The third failure and every score after CUT are stored now; a fit at CUT is unchanged.
    refit = fit_risk_calibration(
        pipeline.open_risk_store(settings), pipeline.labeled_failures(settings), CUT, 60.0
    )

    assert refit.to_dict() == dataclasses.replace(calibration, run_id=None).to_dict()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("until", "message"),
    [
        ("2014-03-13 00:00", "calibrate: no labeled failure at or before 2014-03-13"),
        ("2014-03-14 09:30", r"calibrate: \d+ of \d+ stored score rows .* at least 30"),
    ],
)
def test_calibrate_too_few_failures_raises(calibrated, until, message):
    settings, _ = calibrated
    path = settings.home / CALIBRATION_FILE
    saved = path.read_text(encoding="utf-8")

    with pytest.raises(PredictorUserError, match=message):
        pipeline.calibrate(settings, pd.Timestamp(until, tz="UTC"))

    assert path.read_text(encoding="utf-8") == saved


def test_calibrate_without_labels_raises(sample_data, tmp_path, isolated_env):
    settings = _settings(sample_data, tmp_path, labeled=False)

    with pytest.raises(PredictorUserError, match="no source has labels_path set"):
        pipeline.calibrate(settings)


def test_cli_calibrate_without_labels_exits_2(sample_data, tmp_path, isolated_env, capsys):
    _settings(sample_data, tmp_path, labeled=False)

    code = cli.main(["--config", str(tmp_path / "predictor.toml"), "calibrate"])

    error = capsys.readouterr().err.strip()
    assert code == 2
    assert error.startswith("predictor calibrate: error: calibrate: no source has labels_path")
    assert "\n" not in error


def test_active_calibration_absent(sample_data, tmp_path, isolated_env):
    settings = _settings(sample_data, tmp_path)

    assert pipeline.active_calibration(settings) is None


@pytest.mark.slow
def test_calibration_for_other_horizon_not_applied(calibrated, caplog):
    settings, _ = calibrated
    other = dataclasses.replace(
        settings, model=dataclasses.replace(settings.model, horizon_minutes=30.0)
    )

    assert pipeline.active_calibration(settings) is not None
    assert pipeline.active_calibration(other) is None
    assert "calibration in" in caplog.text
    assert "is for a 60 min horizon, the model horizon is 30 min" in caplog.text


def test_failure_targets_hand_case():
    times = pd.date_range("2024-01-01 00:00", periods=8, freq="10min", tz="UTC")
    failure = LabeledFailure(
        "gpu-1",
        failure_time=pd.Timestamp("2024-01-01 00:40", tz="UTC"),
        window_start=pd.Timestamp("2024-01-01 00:20", tz="UTC"),
        window_end=pd.Timestamp("2024-01-01 00:50", tz="UTC"),
    )

    target = failure_targets(times, [failure], pd.Timedelta(minutes=20))

    # Positive from 00:30 (failure within 20 min, exclusive) to 00:50 (window end).
    assert target.tolist() == [0, 0, 0, 1, 1, 1, 0, 0]


def test_invalid_calibration_file_names_path(tmp_path):
    from predictor.exceptions import InputError

    path = tmp_path / CALIBRATION_FILE
    path.write_text('{"calibrator": {}, "horizon_minutes": 60}', encoding="utf-8")

    with pytest.raises(
        InputError,
        match=r"calibration.json: invalid calibration file: .*"
        r"missing keys \['fitted_until', 'components'\]",
    ):
        load_risk_calibration(path)
