"""Causal backtests on slices of the shipped real data, through the command line."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from predictor.evaluate.backtest import BacktestConfig, score_series
from predictor.evaluate.baselines import L2NormDetector, PCAReconstructionDetector
from predictor.exceptions import ConfigError, DegenerateMemberWarning

FAST = BacktestConfig(n_estimators=30, max_train_rows=1000)


@pytest.fixture(scope="module")
def smd_slice(sample_data):
    """The first 1,500 training and 1,500 test rows of one real SMD machine."""

    def read(part: str) -> pd.DataFrame:
        path = sample_data / "smd" / part / "machine-1-2.txt.gz"
        return pd.read_csv(path, header=None, nrows=1500, dtype="float64")

    return read("train"), read("test")


@pytest.mark.parametrize("detector", [L2NormDetector(), PCAReconstructionDetector()])
def test_baseline_scores_spike_higher(smd_slice, detector):
    train, test = smd_slice
    detector.fit(train.to_numpy())
    spiked = test.to_numpy().copy()
    spiked[10] += 5.0

    scores = detector.score_samples(spiked)

    assert scores[10] > np.max(np.delete(scores, 10))


def test_score_series_bounded_for_every_detector(smd_slice):
    train, test = smd_slice

    result = score_series(train, test, FAST)

    assert set(result.test) == set(FAST.detector_names())
    for name, scores in result.test.items():
        assert len(scores) == len(test), name
        assert np.all((scores >= 0) & (scores <= 1)), name


def test_score_series_unchanged_by_later_rows(smd_slice):
    train, test = smd_slice

    early = score_series(train, test.iloc[:700], FAST).test
    full = score_series(train, test, FAST).test

    for name in early:
        np.testing.assert_allclose(early[name], full[name][:700], err_msg=name)


def _run_backtest(args, home):
    return subprocess.run(
        [sys.executable, "-m", "predictor.cli", "--home", str(home), "backtest", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"},
    )


@pytest.mark.slow
def test_nab_backtest_writes_result_layout(sample_data, tmp_path):
    data = tmp_path / "nab"
    shutil.copytree(sample_data / "nab", data, ignore=shutil.ignore_patterns("LICENSE"))
    (data / "data").mkdir()
    shutil.move(data / "realKnownCause", data / "data" / "realKnownCause")
    out = tmp_path / "out"

    result = _run_backtest(
        ["--data", str(data), "--format", "nab", "--out", str(out)], tmp_path / "home"
    )

    assert result.returncode == 0, result.stderr[-2000:]
    source = pd.read_csv(data / "data/realKnownCause/ec2_request_latency_system_failure.csv")
    written = pd.read_csv(
        out / "ensemble/realKnownCause/ensemble_ec2_request_latency_system_failure.csv"
    )
    assert list(written.columns) == ["timestamp", "anomaly_score"]
    assert written["timestamp"].tolist() == source["timestamp"].tolist()
    assert written["anomaly_score"].between(0, 1).all()
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert set(summary["detectors"]["ensemble"]) == {"standard", "reward_low_FP", "reward_low_FN"}
    assert summary["comparison"]["metric"] == "standard"


@pytest.mark.slow
def test_matrix_backtest_reports_metrics_and_logs_mlflow(sample_data, tmp_path):
    import mlflow

    data = tmp_path / "smd"
    for part in ("train", "test"):
        (data / part).mkdir(parents=True)
        frame = pd.read_csv(sample_data / "smd" / part / "machine-1-2.txt.gz", header=None)
        rows = frame.iloc[:3000] if part == "train" else frame.iloc[4000:7000]
        with gzip.open(data / part / "machine-1-2.txt.gz", "wt") as file:
            rows.to_csv(file, header=False, index=False)
    labels = np.loadtxt(sample_data / "smd/test_label/machine-1-2.txt", dtype=int)[4000:7000]
    (data / "test_label").mkdir()
    np.savetxt(data / "test_label/machine-1-2.txt", labels, fmt="%d")
    out = tmp_path / "out"

    result = _run_backtest(
        ["--data", str(data), "--format", "smd", "--out", str(out)], tmp_path / "home"
    )

    assert result.returncode == 0, result.stderr[-2000:]
    scores = pd.read_csv(out / "machine-1-2.csv")
    assert list(scores.columns) == ["row", "anomaly_score"]
    assert scores["row"].tolist() == list(range(3000))
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    for key in (
        "best_f1",
        "f1_label_free",
        "auc_pr",
        "vus_pr",
        "event_recall",
        "false_alarms_per_day",
    ):
        assert key in summary["mean"]["ensemble"]
    assert summary["comparison"]["metric"] == "auc_pr"
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["predictor"])
    assert len(runs) == 1
    assert runs["metrics.ensemble.auc_pr"].iloc[0] == pytest.approx(
        summary["mean"]["ensemble"]["auc_pr"]
    )


def test_backtest_missing_folder_exits_2(tmp_path):
    result = _run_backtest(
        ["--data", str(tmp_path / "nowhere"), "--format", "nab", "--out", str(tmp_path)],
        tmp_path / "home",
    )

    assert result.returncode == 2
    assert "folder not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_constant_series_without_robust_z_raises():
    flat = pd.DataFrame({"value": np.full(200, 3.0)})
    config = BacktestConfig(members=("knn", "iforest"), n_estimators=10)

    with pytest.raises(ConfigError, match="add 'robust_z'"), pytest.warns(DegenerateMemberWarning):
        score_series(flat.iloc[:100], flat.iloc[100:], config)
