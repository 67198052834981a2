"""Quality floors on real telemetry and the fit-and-score time budget.

Behaviour tests live next to this file; these only guard against regressions in how
well and how fast the ensemble works on realistic input.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from predictor.detect import AnomalyEnsemble
from predictor.features import build_grid, make_features

# Measured 0.895-0.897 over random_state 0, 1 and 2 (scikit-learn 1.9, PyOD 3.6), so the
# floor leaves room for library changes without letting a broken detector through.
SMD_SLICE_MIN_ROC_AUC = 0.85


def _matrix_features(matrix: np.ndarray, metric_names: list[str]) -> pd.DataFrame:
    wide = pd.DataFrame(matrix, columns=metric_names)
    wide["timestamp"] = pd.date_range("2026-01-01", periods=len(wide), freq="min", tz="UTC")
    rows = wide.melt(id_vars="timestamp", var_name="metric", value_name="value")
    return make_features(build_grid(rows, 60.0), window_steps=12)


@pytest.mark.shared_data
def test_smd_machine_slice_roc_auc(shared_data):
    # SMD machine-1-2: the last 8000 training minutes, then test minutes 3000-7000, which
    # contain three labeled anomaly segments (rows 4629-4687, 5486-5490, 5875-5950).
    smd = shared_data / "smd"
    metric_names = (smd / "metric_names.txt").read_text().split()
    train = np.loadtxt(smd / "train" / "machine-1-2.txt.gz", delimiter=",")[-8000:]
    test = np.loadtxt(smd / "test" / "machine-1-2.txt.gz", delimiter=",")[3000:7000]
    labels = np.loadtxt(smd / "test_label" / "machine-1-2.txt")[3000:7000]
    features = _matrix_features(np.vstack([train, test]), metric_names)

    model = AnomalyEnsemble(random_state=0).fit(features.iloc[: len(train)])
    scores = model.score_samples(features.iloc[len(train) :])

    assert labels.sum() == 140
    assert model.dropped_members_ == {}
    assert roc_auc_score(labels, scores) > SMD_SLICE_MIN_ROC_AUC


@pytest.mark.slow
def test_fit_and_score_time_budget():
    # 24,000 grid rows x 152 feature columns (38 metrics), the size of one SMD machine's
    # training part. Measured 4 to 7 s for fit plus score on one core of the shared 2-core
    # development machine; the budget is 30 s.
    rng = np.random.default_rng(0)
    n_rows, n_metrics = 24_000, 38
    walk = np.cumsum(rng.normal(0, 0.01, size=(n_rows, n_metrics)), axis=0)
    matrix = walk + rng.normal(0, 0.05, size=(n_rows, n_metrics))
    features = _matrix_features(matrix, [f"metric_{j}" for j in range(n_metrics)])

    started = time.perf_counter()
    model = AnomalyEnsemble(random_state=0).fit(features)
    scores = model.score_samples(features)
    elapsed_seconds = time.perf_counter() - started

    assert features.shape == (n_rows, 152)
    assert np.isfinite(scores).all()
    assert elapsed_seconds < 30.0
