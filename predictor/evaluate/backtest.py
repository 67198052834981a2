"""Causal backtests: fit on the past part of each series, score forward, measure.

Every detector, the ensemble and the baselines alike, is fitted on the training part
only and scores the rest in time order with trailing features, so no score looks ahead.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from predictor.detect import AnomalyEnsemble
from predictor.detect._tail import TailProbability
from predictor.detect.ensemble import SURPRISE_AT_FULL_SCORE
from predictor.evaluate.baselines import L2NormDetector, PCAReconstructionDetector
from predictor.features import make_features

logger = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
BASELINES = ("pca_reconstruction", "l2_norm")
# Share of the top training scores each baseline's exponential tail is fitted to, the
# same as the ensemble's default.
BASELINE_TAIL_FRACTION = 0.05


@dataclass(frozen=True)
class BacktestConfig:
    """One parameter set for every series of a data set.

    Attributes
    ----------
    members : tuple of str
        The ensemble members; each is also scored alone as a baseline.
    window_steps : int
        Trailing feature window, in rows.
    n_estimators, n_neighbors, max_train_rows, random_state
        Passed to :class:`~predictor.detect.AnomalyEnsemble`.
    smoothing_steps : int
        Length of the trailing mean applied to every detector's score; 1 means none.
    """

    members: tuple[str, ...] = ("iforest", "ecod", "knn", "pca", "robust_z")
    window_steps: int = 12
    n_estimators: int = 100
    n_neighbors: int = 10
    max_train_rows: int = 5000
    random_state: int = 0
    smoothing_steps: int = 1

    def detector_names(self) -> list[str]:
        """Return the ensemble, each member and the baselines, in output order."""
        return [ENSEMBLE, *self.members, *BASELINES]


@dataclass
class SeriesScores:
    """Scores in [0, 1] for the scored rows of one series, per detector."""

    test: dict[str, np.ndarray] = field(default_factory=dict)
    train: dict[str, np.ndarray] = field(default_factory=dict)


def _smooth(scores: np.ndarray, steps: int) -> np.ndarray:
    """Return the trailing mean over ``steps`` rows (causal); NaN cells are skipped."""
    if steps <= 1:
        return scores
    return pd.Series(scores).rolling(steps, min_periods=1).mean().to_numpy()


def _baseline_scores(
    detector: BaseEstimator, train: pd.DataFrame, test: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a baseline on raw training metrics; map its scores to [0, 1] like the ensemble."""
    detector.fit(train.to_numpy())
    train_raw = detector.score_samples(train.to_numpy())
    tail = TailProbability(BASELINE_TAIL_FRACTION, min_scale=1e-12).fit(train_raw)

    def to_unit(raw: np.ndarray) -> np.ndarray:
        return np.minimum(1.0, tail.surprise(raw) / SURPRISE_AT_FULL_SCORE)

    return to_unit(train_raw), to_unit(detector.score_samples(test.to_numpy()))


def score_series(train: pd.DataFrame, test: pd.DataFrame, config: BacktestConfig) -> SeriesScores:
    """Fit every detector on ``train`` and score ``test`` causally.

    Parameters
    ----------
    train, test : pandas.DataFrame
        Consecutive rows of one series, one column per metric, in time order. The
        features of the first test rows use the last training rows, which are in the past.
    config : BacktestConfig

    Returns
    -------
    SeriesScores
        For each detector, scores in [0, 1] of the training rows (in-sample) and of the
        test rows. Higher means more anomalous.
    """
    features = make_features(pd.concat([train, test], ignore_index=True), config.window_steps)
    train_features = features.iloc[: len(train)]
    test_features = features.iloc[len(train) :]

    ensemble = AnomalyEnsemble(
        members=config.members,
        n_estimators=config.n_estimators,
        n_neighbors=config.n_neighbors,
        max_train_rows=config.max_train_rows,
        random_state=config.random_state,
    ).fit(train_features)

    result = SeriesScores()
    result.train[ENSEMBLE] = ensemble.score_samples(train_features)
    result.test[ENSEMBLE] = ensemble.score_samples(test_features)
    train_surprise = ensemble.member_surprise(train_features)
    test_surprise = ensemble.member_surprise(test_features)
    for member in config.members:
        if member not in test_surprise.columns:
            # A member dropped as degenerate in training scores every row as normal.
            result.train[member] = np.zeros(len(train))
            result.test[member] = np.zeros(len(test))
            continue
        result.train[member] = np.minimum(
            1.0, train_surprise[member].to_numpy() / SURPRISE_AT_FULL_SCORE
        )
        result.test[member] = np.minimum(
            1.0, test_surprise[member].to_numpy() / SURPRISE_AT_FULL_SCORE
        )

    baselines = {"pca_reconstruction": PCAReconstructionDetector(), "l2_norm": L2NormDetector()}
    for name, detector in baselines.items():
        result.train[name], result.test[name] = _baseline_scores(detector, train, test)

    for scores in (result.train, result.test):
        for name in scores:
            scores[name] = np.nan_to_num(_smooth(scores[name], config.smoothing_steps), nan=0.0)
    return result


def summarize_detectors(
    per_entity: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> pd.DataFrame:
    """Return the mean of every metric per detector over entities (rows: detectors)."""
    frames = {entity: pd.DataFrame(metrics).T for entity, metrics in per_entity.items()}
    stacked = pd.concat(frames, names=["entity", "detector"])
    return stacked.groupby(level="detector", sort=False).mean()
