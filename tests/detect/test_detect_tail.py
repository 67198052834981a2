"""Tests for the tail-probability scale shared by the ensemble members."""

from __future__ import annotations

import numpy as np
import pytest

from predictor.detect._tail import TailProbability


@pytest.fixture
def training_scores():
    return np.random.default_rng(0).exponential(1.0, size=2000)


def test_tail_surprise_empirical_inside_training(training_scores):
    tail = TailProbability(tail_fraction=0.05, min_scale=1e-12).fit(training_scores)
    median = np.median(training_scores)

    surprise = tail.surprise(np.array([training_scores.min(), median]))

    assert surprise[0] == 0.0
    n_at_or_above = int((training_scores >= median).sum())
    assert surprise[1] == pytest.approx(-np.log10((1 + n_at_or_above) / 2001))


def test_tail_surprise_keeps_growing_past_max(training_scores):
    tail = TailProbability(tail_fraction=0.05, min_scale=1e-12).fit(training_scores)
    top = training_scores.max()

    surprise = tail.surprise(np.array([top, top + 5.0, top + 50.0]))

    assert np.all(np.diff(surprise) > 0)
    # An exponential sample has mean exceedance 1, so 50 units add about 50 / ln 10.
    assert surprise[2] - surprise[1] == pytest.approx(45.0 / np.log(10.0), rel=0.2)


def test_tail_surprise_monotone(training_scores):
    tail = TailProbability(tail_fraction=0.05, min_scale=1e-12).fit(training_scores)
    grid = np.linspace(-1.0, 30.0, 5000)

    surprise = tail.surprise(grid)

    assert np.all(np.diff(surprise) >= 0)


def test_tail_constant_training_uses_min_scale():
    tail = TailProbability(tail_fraction=0.05, min_scale=1.0).fit(np.zeros(100))

    surprise = tail.surprise(np.array([0.0, 1.0, np.log(10.0)]))

    assert surprise[0] == 0.0
    assert surprise[2] == pytest.approx(1.0)


def test_tail_non_finite_score_is_nan(training_scores):
    tail = TailProbability(tail_fraction=0.05, min_scale=1e-12).fit(training_scores)

    surprise = tail.surprise(np.array([np.nan, np.inf, 1.0]))

    assert np.isnan(surprise[:2]).all()
    assert np.isfinite(surprise[2])


def test_tail_rejects_non_finite_training():
    with pytest.raises(ValueError, match=r"expected a non-empty array of finite training"):
        TailProbability(tail_fraction=0.05, min_scale=1.0).fit(np.array([1.0, np.nan]))
