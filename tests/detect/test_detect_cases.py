"""Operator-reported traps: constant training, a sustained outage, quantized gauges."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from predictor.detect import AnomalyEnsemble, DegenerateMemberWarning, RobustZScore

PYOD_DEFAULTS = ("iforest", "knn", "knn_log")


def test_constant_training_drops_pyod_members(constant_training_case, caplog):
    raw, features = constant_training_case
    train = features[(raw["split"] == "train").to_numpy()]

    with (
        caplog.at_level(logging.WARNING, logger="predictor.detect.ensemble"),
        pytest.warns(DegenerateMemberWarning) as record,
    ):
        model = AnomalyEnsemble(random_state=0).fit(train)

    messages = [str(warning.message) for warning in record]
    assert len(messages) == 3
    assert {warning.filename for warning in record} == {__file__}
    for member in PYOD_DEFAULTS:
        prefix = f"ensemble member {member!r} dropped"
        assert any(message.startswith(prefix) for message in messages)
    assert list(model.members_) == ["channel"]
    assert sorted(model.dropped_members_) == sorted(PYOD_DEFAULTS)
    assert "training scores are all 0" in model.dropped_members_["knn"]
    for member in PYOD_DEFAULTS:
        assert f"dropped member {member}" in caplog.text


def test_constant_training_repeats_normal_move_anomalous(constant_training_case):
    raw, features = constant_training_case
    is_train = (raw["split"] == "train").to_numpy()
    with pytest.warns(DegenerateMemberWarning):
        model = AnomalyEnsemble(random_state=0).fit(features[is_train])
    scoring = raw[~is_train].reset_index(drop=True)

    scores = model.score_samples(features[~is_train])

    repeats = ((scoring["cpu_util"] == 0.0) & (scoring["mem_mb"] == 512.0)).to_numpy()
    large_move = (scoring["cpu_util"] == 35.0).to_numpy()
    assert repeats.sum() == 3
    assert np.all(scores[repeats] == 0.0)
    assert scores[large_move][0] == 1.0
    assert model.explain(features[~is_train])[int(np.flatnonzero(large_move)[0])][0][0] in {
        "cpu_util",
        "mem_mb",
    }


def test_sustained_outage_flagged(outage_case):
    raw, features = outage_case
    in_outage = (raw["in_outage"] == 1).to_numpy()
    first_outage_row = int(np.flatnonzero(in_outage)[0])
    model = AnomalyEnsemble(random_state=0).fit(features.iloc[:first_outage_row])

    scores = model.score_samples(features)

    # Every one of the 60 outage rows is flagged, not a contamination-sized share.
    assert in_outage.sum() == 60
    assert scores[in_outage].min() >= 0.5
    assert np.mean(scores[:first_outage_row] >= 0.5) < 0.05


def test_sustained_outage_members_that_carry_it(outage_case):
    raw, features = outage_case
    in_outage = (raw["in_outage"] == 1).to_numpy()
    first_outage_row = int(np.flatnonzero(in_outage)[0])
    members = ("iforest", "ecod", "knn", "knn_log", "pca", "robust_z")
    model = AnomalyEnsemble(members=members, random_state=0)
    model.fit(features.iloc[:first_outage_row])

    surprise = model.member_surprise(features[in_outage])

    # Once the outage fills the trailing window only the level is far off: ECOD's
    # per-column tail probability stops at 1 / (n + 1) and the isolation forest sees one
    # odd column, while kNN distance and PCA projection grow with the size of the jump.
    assert surprise["knn"].min() > 4.0
    assert surprise["pca"].min() > 4.0
    assert surprise["robust_z"].iloc[0] > 4.0
    assert all(row[0][0] == "error_ratio" for row in model.explain(features[in_outage]))


def test_sustained_outage_onset_robust_z(outage_case):
    raw, features = outage_case
    in_outage = (raw["in_outage"] == 1).to_numpy()
    first_outage_row = int(np.flatnonzero(in_outage)[0])
    detector = RobustZScore().fit(features.iloc[:first_outage_row])

    z = detector.score_samples(features)

    # The residual against the trailing median is huge at the onset; once the window
    # is mostly outage the median moves to 1.0, so the residual alone stops carrying it.
    assert z[first_outage_row] > 100.0
    assert z[:first_outage_row].max() < 10.0


def test_quantized_gauges_spikes_top_scored(quantized_case):
    raw, features = quantized_case
    spikes = np.flatnonzero((raw["active_conns"] > 20).to_numpy())

    model = AnomalyEnsemble(random_state=0).fit(features)
    scores = model.score_samples(features)

    assert spikes.tolist() == [50, 220, 333]
    assert sorted(np.argsort(-scores)[:3].tolist()) == spikes.tolist()
    assert scores[spikes].min() >= 0.5


def test_quantized_gauges_nan_member_dropped(quantized_case, caplog):
    # ABOD divides by the distance to identical neighbors: on repeated integer rows its
    # scores are NaN, so it must go and the others must still find the spikes.
    raw, _ = quantized_case
    gauges = raw[["active_conns", "queue_len"]].astype(float)
    spikes = np.flatnonzero((raw["active_conns"] > 20).to_numpy())
    model = AnomalyEnsemble(members=(*PYOD_DEFAULTS, "abod", "robust_z"), random_state=0)

    with (
        caplog.at_level(logging.WARNING, logger="predictor.detect.ensemble"),
        pytest.warns(DegenerateMemberWarning, match=r"'abod' dropped: returned non-finite"),
    ):
        model.fit(gauges)
    scores = model.score_samples(gauges)

    assert list(model.dropped_members_) == ["abod"]
    assert "abod" not in model.members_
    assert "dropped member abod: returned non-finite scores" in caplog.text
    assert np.isfinite(scores).all()
    assert sorted(np.argsort(-scores)[:3].tolist()) == spikes.tolist()
    assert model.explain(gauges.iloc[spikes])[0][0][0] == "active_conns"
