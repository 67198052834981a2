"""Behaviour tests for the channel-wise member of the ensemble."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from predictor.detect import DEFAULT_MEMBERS, AnomalyEnsemble, DegenerateMemberWarning
from predictor.detect.channel import channel_scores, column_surprise, fit_column_tails
from predictor.lifecycle.serialization import TRUSTED_TYPES

N_TRAIN = 2000
N_COLUMNS = 20


@pytest.fixture(scope="module")
def wide():
    """Named training and test rows of a component with many independent metrics."""
    rng = np.random.default_rng(1)
    columns = [f"m{j}:value" for j in range(N_COLUMNS)]
    train = pd.DataFrame(rng.normal(size=(N_TRAIN, N_COLUMNS)), columns=columns)
    test = pd.DataFrame(rng.normal(size=(300, N_COLUMNS)), columns=columns)
    return train, test


def test_fault_in_two_of_many_columns_scores_high():
    rng = np.random.default_rng(2)
    tails = fit_column_tails(np.abs(rng.normal(size=(N_TRAIN, N_COLUMNS))), 0.05)
    normal = np.abs(rng.normal(size=(500, N_COLUMNS)))
    faulty = normal[:50].copy()
    faulty[:, [3, 11]] += 6.0

    normal_scores = channel_scores(normal, tails)

    assert channel_scores(faulty, tails).min() > np.quantile(normal_scores, 0.99)


def test_score_is_mean_of_top_k_column_surprises():
    rng = np.random.default_rng(3)
    tails = fit_column_tails(np.abs(rng.normal(size=(N_TRAIN, N_COLUMNS))), 0.05)
    z = np.abs(rng.normal(size=(40, N_COLUMNS))) * 2.0

    expected = np.sort(column_surprise(z, tails), axis=1)[:, -3:].mean(axis=1)

    np.testing.assert_allclose(channel_scores(z, tails, top_k=3), expected)


def test_top_k_capped_at_columns():
    tails = fit_column_tails(np.abs(np.random.default_rng(4).normal(size=(300, 2))), 0.05)
    z = np.array([[0.5, 4.0]])

    np.testing.assert_allclose(
        channel_scores(z, tails, top_k=5), column_surprise(z, tails).mean(axis=1)
    )


def test_heavy_tailed_column_is_discounted():
    rng = np.random.default_rng(5)
    z = np.abs(np.column_stack([rng.normal(size=N_TRAIN), rng.standard_t(1.5, size=N_TRAIN)]))
    tails = fit_column_tails(z, 0.05)

    light, heavy = column_surprise(np.array([[5.0, 5.0]]), tails)[0]

    # The same deviation is rare for the normal column and routine for the t column.
    assert light > heavy + 1.0


@pytest.mark.parametrize(
    ("z", "top_k", "message"),
    [
        (np.zeros((2, 3)), 3, r"z: expected 2 columns, one per fitted tail, got shape \(2, 3\)"),
        (np.zeros((2, 2)), 0, r"top_k: expected an int >= 1, got 0"),
        (np.zeros((2, 2)), 1.5, r"top_k: expected an int >= 1, got 1.5"),
    ],
)
def test_rejects_bad_input(z, top_k, message):
    tails = fit_column_tails(np.abs(np.random.default_rng(6).normal(size=(100, 2))), 0.05)

    with pytest.raises(ValueError, match=message):
        channel_scores(z, tails, top_k=top_k)


def test_member_flags_shift_in_three_metrics_of_many(wide):
    train, test = wide
    shifted = test.copy()
    shifted.iloc[150:, [4, 9, 17]] += 8.0

    model = AnomalyEnsemble(members=("channel",), random_state=0).fit(train)
    surprise = model.member_surprise(shifted)["channel"].to_numpy()

    assert list(model.members_) == ["channel"]
    assert len(model.channel_tails_) == N_COLUMNS
    assert surprise[150:].min() > surprise[:150].max()


def test_member_ignores_trailing_window_columns():
    rng = np.random.default_rng(8)
    columns = ["m:value", "m:diff", "m:resid", "m:std"]
    train = pd.DataFrame(rng.normal(size=(N_TRAIN, 4)), columns=columns)
    # Back at the training level while the trailing std still holds a past fault.
    after_fault = pd.DataFrame([[0.0, 0.0, 0.0, 50.0]], columns=columns)
    during_fault = pd.DataFrame([[50.0, 0.0, 0.0, 0.0]], columns=columns)

    model = AnomalyEnsemble(members=("channel",), random_state=0).fit(train)

    assert model.members_["channel"].score_columns_.tolist() == [0, 2]
    assert model.member_surprise(after_fault)["channel"].iloc[0] < 1.0
    assert model.member_surprise(during_fault)["channel"].iloc[0] > 4.0


def test_member_keeps_constant_training_repeats_normal(constant_training_case):
    raw, features = constant_training_case
    is_train = (raw["split"] == "train").to_numpy()
    with pytest.warns(DegenerateMemberWarning):
        model = AnomalyEnsemble(members=DEFAULT_MEMBERS, random_state=0).fit(features[is_train])
    scoring = raw[~is_train].reset_index(drop=True)

    scores = model.score_samples(features[~is_train])

    repeats = ((scoring["cpu_util"] == 0.0) & (scoring["mem_mb"] == 512.0)).to_numpy()
    large_move = (scoring["cpu_util"] == 35.0).to_numpy()
    assert list(model.members_) == ["channel"]
    assert repeats.sum() == 3
    assert np.all(scores[repeats] == 0.0)
    assert scores[large_move][0] > 0.99


def test_member_scores_do_not_depend_on_the_batch(wide):
    train, test = wide
    model = AnomalyEnsemble(members=("channel",), random_state=0).fit(train)
    rows = test.iloc[:30]

    one_by_one = [
        model.member_surprise(rows.iloc[i : i + 1])["channel"].iloc[0] for i in range(30)
    ]

    np.testing.assert_array_equal(model.member_surprise(rows)["channel"].to_numpy(), one_by_one)


def test_member_scores_missing_cells_as_normal(wide):
    train, _ = wide
    model = AnomalyEnsemble(members=("channel",), random_state=0).fit(train)
    row = pd.DataFrame(np.full((1, N_COLUMNS), np.nan), columns=train.columns)

    assert model.member_surprise(row)["channel"].tolist() == [0.0]


def test_member_is_kept_on_constant_training():
    train = np.full((200, 3), 5.0)
    model = AnomalyEnsemble(members=("channel",), random_state=0).fit(train)

    scores = model.score_samples(np.array([[5.0, 5.0, 5.0], [5.0, 9.0, 5.0]]))

    assert model.dropped_members_ == {}
    assert scores[0] < 0.5 < scores[1]


def test_saved_ensemble_holds_only_trusted_types(wide, tmp_path):
    train, test = wide
    model = AnomalyEnsemble(members=("knn", "knn_log", "channel"), random_state=0).fit(train)
    path = tmp_path / "ensemble.skops"
    sio.dump(model, path)

    found = sio.get_untrusted_types(file=path)
    loaded = sio.load(path, trusted=found)

    assert sorted(name for name in found if name not in TRUSTED_TYPES) == []
    np.testing.assert_array_equal(loaded.score_samples(test), model.score_samples(test))
