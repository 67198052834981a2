"""Behaviour tests for the anomaly ensemble on seeded toy telemetry."""

from __future__ import annotations

import logging

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score

from predictor.detect import (
    DEFAULT_MEMBER_WEIGHTS,
    DEFAULT_MEMBERS,
    AnomalyEnsemble,
    DegenerateMemberWarning,
)
from predictor.detect.ensemble import _combine_rows
from predictor.features import build_grid, make_features

T0 = pd.Timestamp("2026-04-01", tz="UTC")
N_TRAIN = 1500
N_TEST = 500
# Test rows (offsets into the test part) with injected faults, and the metric hit.
SPIKES = {100: "latency", 250: "gpu_temp", 400: "latency"}
WINDOW_STEPS = 12


def _toy_rows(rng: np.random.Generator, n_rows: int, start: pd.Timestamp) -> pd.DataFrame:
    minutes = np.arange(n_rows)
    daily = np.sin(2 * np.pi * minutes / 1440.0)
    wide = pd.DataFrame(
        {
            "gpu_temp": 70.0 + 5.0 * daily + rng.normal(0, 0.5, n_rows),
            "latency": 0.2 + 0.02 * daily + rng.normal(0, 0.005, n_rows),
            "queue": rng.poisson(3, n_rows).astype(float),
        },
        index=start + pd.to_timedelta(minutes, unit="min"),
    )
    return wide


@pytest.fixture(scope="module")
def toy():
    """Features of a 3-metric component: a clean training part, a test part with faults."""
    rng = np.random.default_rng(0)
    wide = _toy_rows(rng, N_TRAIN + N_TEST, T0)
    for offset, metric in SPIKES.items():
        row = N_TRAIN + offset
        wide.iloc[row, wide.columns.get_loc(metric)] *= 1.6
    rows = (
        wide.rename_axis("timestamp")
        .reset_index()
        .melt(id_vars="timestamp", var_name="metric", value_name="value")
    )
    features = make_features(build_grid(rows, 60.0), window_steps=WINDOW_STEPS)
    labels = np.zeros(N_TEST, dtype=bool)
    labels[list(SPIKES)] = True
    return rows, features.iloc[:N_TRAIN], features.iloc[N_TRAIN:], labels


def _clean(labels: np.ndarray) -> np.ndarray:
    """Return the rows whose trailing window contains no spike.

    The trailing std of the WINDOW_STEPS rows after a spike still includes it, so those
    rows count as neither spike nor clean.
    """
    clean = np.ones(labels.size, dtype=bool)
    for offset in np.flatnonzero(labels):
        clean[offset : offset + WINDOW_STEPS] = False
    return clean


@pytest.fixture(scope="module")
def fitted(toy):
    _, train, _, _ = toy
    return AnomalyEnsemble(n_estimators=50, random_state=0).fit(train)


def test_ensemble_known_anomalies_score_higher(toy, fitted):
    _, _, test, labels = toy
    clean = _clean(labels)

    scores = fitted.score_samples(test)

    assert scores[labels].min() >= 0.5
    assert scores[labels].min() > scores[clean].max()


def test_ensemble_scores_in_unit_interval(toy, fitted):
    _, train, test, _ = toy

    scores = np.concatenate([fitted.score_samples(train), fitted.score_samples(test)])

    assert np.isfinite(scores).all()
    assert scores.min() >= 0.0
    assert scores.max() <= 1.0


def test_ensemble_training_false_alarm_rate(toy, fitted):
    _, train, _, _ = toy

    scores = fitted.score_samples(train)

    # p_fused <= 1e-2 on at most a few percent of the rows it was fitted on.
    assert (scores >= 0.5).mean() < 0.03


def test_ensemble_keeps_all_members_on_healthy_data(fitted):
    assert list(fitted.members_) == list(DEFAULT_MEMBERS)
    assert fitted.dropped_members_ == {}
    assert fitted.n_features_in_ == 12
    assert fitted.feature_names_in_[0] == "gpu_temp:value"


def test_ensemble_member_surprise_frame(toy, fitted):
    _, _, test, labels = toy

    surprise = fitted.member_surprise(test)

    assert list(surprise.columns) == list(fitted.members_)
    assert surprise.index.equals(test.index)
    assert (surprise.to_numpy() >= 0).all()
    fused = surprise.mean(axis=1).to_numpy()
    assert fused[labels].min() > fused[_clean(labels)].max()


def test_ensemble_score_unchanged_by_later_rows(toy):
    rows, train, _, _ = toy
    model = AnomalyEnsemble(n_estimators=20, random_state=0).fit(train)
    cutoff = T0 + pd.Timedelta(minutes=N_TRAIN + 200)
    early = rows[rows["timestamp"] <= cutoff]

    early_scores = model.score_samples(make_features(build_grid(early, 60.0), 12))
    full_scores = model.score_samples(make_features(build_grid(rows, 60.0), 12))

    np.testing.assert_array_equal(early_scores, full_scores[: early_scores.size])


def test_ensemble_scores_rows_with_missing_metric(toy, fitted):
    _, _, test, labels = toy
    spike_row = test.iloc[[int(np.flatnonzero(labels)[0])]].copy()
    spike_row[[c for c in test.columns if c.startswith("queue:")]] = np.nan

    scores = fitted.score_samples(spike_row)

    assert np.isfinite(scores).all()
    assert scores[0] >= 0.5


def test_ensemble_drivers_name_perturbed_metric(toy, fitted):
    _, _, test, _ = toy

    drivers = fitted.explain(test.iloc[list(SPIKES)], top_k=2)

    for row_drivers, metric in zip(drivers, SPIKES.values(), strict=True):
        assert row_drivers[0][0] == metric
        assert row_drivers[0][1] > 0.5
        assert sum(share for _, share in row_drivers) <= 1.0 + 1e-12


def test_ensemble_drivers_empty_for_normal_rows(toy, fitted):
    _, train, _, _ = toy
    medians = train.median().to_frame().T

    assert fitted.explain(medians) == [[]]


def test_ensemble_clone_and_params_round_trip():
    model = AnomalyEnsemble(members=("iforest", "robust_z"), n_estimators=7, random_state=3)

    copy = clone(model)

    assert copy.get_params() == model.get_params()
    assert copy.set_params(n_neighbors=4).get_params()["n_neighbors"] == 4
    assert model.get_params()["n_neighbors"] == 5


def test_ensemble_clone_of_fitted_is_unfitted(fitted):
    copy = clone(fitted)

    assert not hasattr(copy, "members_")
    assert copy.get_params() == fitted.get_params()


def test_ensemble_same_seed_same_scores(toy):
    _, train, test, _ = toy

    first = AnomalyEnsemble(n_estimators=20, random_state=5).fit(train).score_samples(test)
    second = AnomalyEnsemble(n_estimators=20, random_state=5).fit(train).score_samples(test)

    np.testing.assert_array_equal(first, second)


def test_ensemble_joblib_round_trip(tmp_path, toy, fitted):
    _, _, test, _ = toy
    path = tmp_path / "ensemble.joblib"

    joblib.dump(fitted, path)
    loaded = joblib.load(path)

    np.testing.assert_array_equal(loaded.score_samples(test), fitted.score_samples(test))
    assert loaded.explain(test.iloc[:20]) == fitted.explain(test.iloc[:20])
    assert loaded.dropped_members_ == fitted.dropped_members_


def test_ensemble_optional_members(toy):
    _, train, test, labels = toy
    members = ("copod", "hbos", "lof", "robust_z")

    model = AnomalyEnsemble(members=members, random_state=0).fit(train)
    scores = model.score_samples(test)

    assert list(model.members_) == list(members)
    assert roc_auc_score(labels[_clean(labels) | labels], scores[_clean(labels) | labels]) > 0.99


def test_ensemble_subsamples_slow_members(toy):
    _, train, test, labels = toy

    members = ("iforest", "ecod", "knn", "knn_log", "channel")
    model = AnomalyEnsemble(members=members, max_train_rows=300, n_estimators=20, random_state=0)
    scores = model.fit(train).score_samples(test)

    assert model.members_["knn"].neigh_.n_samples_fit_ == 300
    assert model.members_["knn_log"].neigh_.n_samples_fit_ == 300
    assert model.members_["ecod"].train_sorted_.shape[0] == 300
    assert model.tails_["knn"].sorted_scores_.size == N_TRAIN
    assert scores[labels].min() > scores[_clean(labels)].max()


def test_ensemble_all_members_dropped(caplog):
    X = np.zeros((100, 3))
    model = AnomalyEnsemble(members=("iforest", "knn"), n_estimators=10, random_state=0)

    with (
        caplog.at_level(logging.WARNING, logger="predictor.detect.ensemble"),
        pytest.warns(DegenerateMemberWarning, match=r"ensemble member 'iforest' dropped"),
        pytest.warns(DegenerateMemberWarning, match=r"ensemble member 'knn' dropped"),
        pytest.raises(ValueError, match=r"members: every member was dropped as degenerate"),
    ):
        model.fit(X)
    assert "dropped member iforest: training scores are all 0" in caplog.text


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"members": ()}, ValueError, r"members: expected a non-empty list"),
        ({"members": ("iforest", "svm")}, ValueError, r"unknown: \['svm'\]"),
        ({"members": ("knn", "knn")}, ValueError, r"members: expected each member once"),
        ({"n_estimators": 0}, ValueError, r"n_estimators: expected an int >= 1, got 0"),
        ({"n_neighbors": 2.5}, TypeError, r"n_neighbors: expected an int >= 1, got 2.5"),
        ({"max_train_rows": 1}, ValueError, r"max_train_rows: expected an int >= 2, got 1"),
        ({"tail_fraction": 0.0}, ValueError, r"tail_fraction: expected a number in \(0.0, 0.5\]"),
        ({"tail_fraction": 0.9}, ValueError, r"tail_fraction: expected a number in \(0.0, 0.5\]"),
        ({"fusion": "median"}, ValueError, r"fusion: expected one of .*, got 'median'"),
        (
            {"member_weights": {"forest": 0.5}},
            ValueError,
            r"member_weights: expected member names of .*, got 'forest'",
        ),
        (
            {"member_weights": {"knn": 0.0}},
            ValueError,
            r"member_weights\['knn'\]: expected a number in \(0.0, 1.0\], got 0.0",
        ),
        (
            {"member_weights": {"knn": 1.5}},
            ValueError,
            r"member_weights\['knn'\]: expected a number in \(0.0, 1.0\], got 1.5",
        ),
        ({"member_weights": [0.5]}, TypeError, r"member_weights: expected a mapping"),
    ],
)
def test_ensemble_rejects_bad_params(toy, params, error, message):
    _, train, _, _ = toy

    with pytest.raises(error, match=message):
        AnomalyEnsemble(**params).fit(train)


def test_ensemble_rejects_infinite_input(toy, fitted):
    _, _, test, _ = toy
    bad = test.iloc[:3].copy()
    bad.iloc[1, 0] = np.inf

    with pytest.raises(ValueError, match=r"Input X contains infinity"):
        fitted.score_samples(bad)


def test_ensemble_rejects_other_columns(toy, fitted):
    _, _, test, _ = toy

    with pytest.raises(ValueError, match=r"feature names should match"):
        fitted.score_samples(test.rename(columns={"queue:std": "queue:stdev"}))


def test_ensemble_explain_rejects_bad_top_k(toy, fitted):
    _, _, test, _ = toy

    with pytest.raises(ValueError, match=r"top_k: expected an int >= 1, got 0"):
        fitted.explain(test.iloc[:1], top_k=0)


@pytest.mark.parametrize(("fusion", "expected"), [("mean", [2.0, 3.0]), ("max", [3.0, 4.0])])
def test_fusion_skips_non_finite_members_per_row(fusion, expected):
    surprise = np.array([[1.0, 3.0, np.nan], [2.0, np.inf, 4.0], [np.nan, np.nan, np.nan]])

    fused = _combine_rows(surprise, fusion)

    assert fused[:2].tolist() == expected
    assert np.isnan(fused[2])


@pytest.mark.parametrize("fusion", ["max", "mean"])
def test_fused_surprise_combines_members(toy, fusion):
    _, train, test, _ = toy
    model = AnomalyEnsemble(n_estimators=20, fusion=fusion, random_state=0).fit(train)

    members = model.member_surprise(test).to_numpy() * model.weights_
    combined = members.max(axis=1) if fusion == "max" else members.mean(axis=1)

    np.testing.assert_allclose(model.fused_surprise(test), model.fused_tail_.surprise(combined))


def test_max_fusion_keeps_single_member_signal(toy):
    # A row that only one member finds surprising keeps that member's surprise under
    # "max", and is diluted by the others under "mean".
    _, train, test, _ = toy
    fitted = {
        fusion: AnomalyEnsemble(n_estimators=20, fusion=fusion, random_state=0).fit(train)
        for fusion in ("max", "mean")
    }
    members = fitted["max"].member_surprise(test).to_numpy()
    row = int(np.argmax(members.max(axis=1) - members.mean(axis=1)))

    assert members[row].max() - members[row].mean() > 1.0
    assert (
        fitted["max"].fused_surprise(test.iloc[[row]])[0]
        > (fitted["mean"].fused_surprise(test.iloc[[row]])[0])
    )


def test_ensemble_without_fusion_attribute_averages(toy):
    # Ensembles saved before the fusion parameter existed carry no `fusion_` and averaged
    # their members; they keep scoring that way after loading.
    _, train, test, _ = toy
    old = AnomalyEnsemble(n_estimators=20, fusion="mean", random_state=0).fit(train)
    expected = old.fused_surprise(test)
    del old.fusion_

    np.testing.assert_allclose(old.fused_surprise(test), expected)


def test_member_weights_scale_surprise_before_fusion(toy):
    _, train, test, _ = toy
    members = ("knn", "knn_log", "robust_z")
    weights = {"knn": 0.5, "robust_z": 0.7}
    model = AnomalyEnsemble(
        members=members, member_weights=weights, n_estimators=20, random_state=0
    ).fit(train)

    surprise = model.member_surprise(test).to_numpy()
    weighted = surprise * np.array([0.5, 1.0, 0.7])

    assert model.weights_.tolist() == [0.5, 1.0, 0.7]
    np.testing.assert_allclose(
        model.fused_surprise(test), model.fused_tail_.surprise(weighted.max(axis=1))
    )


def test_discounted_member_loses_rows_it_alone_flags(toy):
    # A row that only the discounted member finds surprising scores lower than without
    # the discount; the member's own surprise is reported unweighted.
    _, train, test, _ = toy
    members = ("knn", "robust_z")
    plain = AnomalyEnsemble(members=members, n_estimators=20, random_state=0).fit(train)
    discounted = AnomalyEnsemble(
        members=members, member_weights={"robust_z": 0.5}, n_estimators=20, random_state=0
    ).fit(train)
    surprise = plain.member_surprise(test)
    row = int(np.argmax(surprise["robust_z"] - surprise["knn"]))

    assert surprise["robust_z"].iloc[row] > surprise["knn"].iloc[row] + 1.0
    pd.testing.assert_frame_equal(discounted.member_surprise(test), surprise)
    assert (
        discounted.fused_surprise(test.iloc[[row]])[0] < plain.fused_surprise(test.iloc[[row]])[0]
    )


def test_default_weights_discount_iforest_and_knn(toy):
    _, train, test, _ = toy
    default = AnomalyEnsemble(n_estimators=20, random_state=0).fit(train)
    equal = AnomalyEnsemble(n_estimators=20, member_weights={}, random_state=0).fit(train)

    assert list(default.members_) == list(DEFAULT_MEMBERS)
    assert dict(zip(default.members_, default.weights_.tolist(), strict=True)) == {
        name: DEFAULT_MEMBER_WEIGHTS.get(name, 1.0) for name in DEFAULT_MEMBERS
    }
    assert equal.weights_.tolist() == [1.0] * len(DEFAULT_MEMBERS)
    assert not np.allclose(default.fused_surprise(test), equal.fused_surprise(test))


def test_weights_of_members_left_out_have_no_effect(toy):
    _, train, test, _ = toy
    with_weight = AnomalyEnsemble(
        members=("knn_log", "channel"), member_weights={"pca": 0.5}, random_state=0
    ).fit(train)
    without = AnomalyEnsemble(
        members=("knn_log", "channel"), member_weights={}, random_state=0
    ).fit(train)

    np.testing.assert_allclose(with_weight.fused_surprise(test), without.fused_surprise(test))


def test_ensemble_without_weights_attribute_weighs_members_equally(toy):
    # Ensembles saved before member weights existed carry no `weights_`, and their fused
    # tail was fitted on unweighted surprises.
    _, train, test, _ = toy
    old = AnomalyEnsemble(n_estimators=20, member_weights={}, random_state=0).fit(train)
    expected = old.fused_surprise(test)
    del old.weights_

    np.testing.assert_allclose(old.fused_surprise(test), expected)
