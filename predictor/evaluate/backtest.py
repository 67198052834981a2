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
from predictor.detect.ensemble import DEFAULT_MEMBER_WEIGHTS, DEFAULT_MEMBERS
from predictor.detect.scale import smooth_surprise, surprise_to_score
from predictor.evaluate.baselines import L2NormDetector, PCAReconstructionDetector
from predictor.exceptions import ConfigError
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
    fusion : str
        How the ensemble combines its members' surprise, ``"max"`` or ``"mean"``.
    member_weights : mapping of str to float
        Factor on each named member's surprise before fusion; the others keep 1.
    window_steps : int
        Trailing feature window, in rows.
    n_estimators, n_neighbors, max_train_rows, random_state
        Passed to :class:`~predictor.detect.AnomalyEnsemble`.
    smoothing_span : int
        Span of the exponentially weighted trailing mean applied to every detector's
        surprise before it is mapped to [0, 1]; 1 means none.
    """

    members: tuple[str, ...] = DEFAULT_MEMBERS
    fusion: str = "max"
    member_weights: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_MEMBER_WEIGHTS)
    )
    window_steps: int = 12
    n_estimators: int = 100
    n_neighbors: int = 5
    max_train_rows: int = 5000
    random_state: int = 0
    smoothing_span: int = 5

    def detector_names(self) -> list[str]:
        """Return the ensemble, each member and the baselines, in output order."""
        return [ENSEMBLE, *self.members, *BASELINES]


@dataclass
class SeriesScores:
    """Scores in [0, 1] for the scored rows of one series, per detector."""

    test: dict[str, np.ndarray] = field(default_factory=dict)
    train: dict[str, np.ndarray] = field(default_factory=dict)


def _baseline_surprise(
    detector: BaseEstimator, train: pd.DataFrame, test: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray]:
    """Fit a baseline on raw training metrics; return the surprise of its scores."""
    detector.fit(train.to_numpy())
    train_raw = detector.score_samples(train.to_numpy())
    tail = TailProbability(BASELINE_TAIL_FRACTION, min_scale=1e-12).fit(train_raw)
    return tail.surprise(train_raw), tail.surprise(detector.score_samples(test.to_numpy()))


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
        test rows. Higher means more anomalous. Every detector's surprise goes through the
        same smoothing and the same map to [0, 1] as the ensemble's.
    """
    features = make_features(pd.concat([train, test], ignore_index=True), config.window_steps)
    n_train = len(train)

    ensemble = AnomalyEnsemble(
        members=config.members,
        fusion=config.fusion,
        member_weights=dict(config.member_weights),
        n_estimators=config.n_estimators,
        n_neighbors=config.n_neighbors,
        max_train_rows=config.max_train_rows,
        random_state=config.random_state,
    )
    try:
        ensemble.fit(features.iloc[:n_train])
    except ValueError as error:
        if "every member was dropped" not in str(error):
            raise
        raise ConfigError(
            f"model.members {list(config.members)!r} cannot score this series: {error}; "
            "add 'robust_z', which also scores series that were constant in training"
        ) from None

    # Surprise of every row, training then test, so the smoothing of the first test
    # rows reads the last training rows, as it would in production.
    surprise: dict[str, np.ndarray] = {ENSEMBLE: ensemble.fused_surprise(features)}
    members = ensemble.member_surprise(features)
    for member in config.members:
        # A member dropped as degenerate in training scores every row as normal.
        surprise[member] = (
            members[member].to_numpy() if member in members.columns else np.zeros(len(features))
        )
    baselines = {"pca_reconstruction": PCAReconstructionDetector(), "l2_norm": L2NormDetector()}
    for name, detector in baselines.items():
        train_surprise, test_surprise = _baseline_surprise(detector, train, test)
        surprise[name] = np.concatenate([train_surprise, test_surprise])

    result = SeriesScores()
    for name, values in surprise.items():
        scores = np.nan_to_num(
            surprise_to_score(smooth_surprise(values, config.smoothing_span)), nan=0.0
        )
        result.train[name] = scores[:n_train]
        result.test[name] = scores[n_train:]
    return result


def score_series_refitted(
    series: pd.DataFrame,
    n_train: int,
    config: BacktestConfig,
    refit_every: int,
    history_rows: int,
) -> dict[str, np.ndarray]:
    """Score ``series`` from row ``n_train`` on, refitting every ``refit_every`` rows.

    Each block of ``refit_every`` rows is scored by detectors fitted on the
    ``history_rows`` rows before the block, so every fit reads past rows only and the
    detectors follow a series whose normal level drifts.

    Returns
    -------
    dict of str to ndarray
        For each detector, the scores of rows ``n_train`` to the end.
    """
    if refit_every < 1 or history_rows < 2:
        raise ValueError(
            f"refit_every and history_rows: expected >= 1 and >= 2, got {refit_every!r} "
            f"and {history_rows!r}"
        )
    blocks: dict[str, list[np.ndarray]] = {}
    for start in range(n_train, len(series), refit_every):
        end = min(start + refit_every, len(series))
        history = series.iloc[max(0, start - history_rows) : start]
        scores = score_series(history, series.iloc[start:end], config)
        for name, values in scores.test.items():
            blocks.setdefault(name, []).append(values)
    return {name: np.concatenate(parts) for name, parts in blocks.items()}


def hold_back_repeats(scores: np.ndarray, threshold: float, hold_rows: int) -> np.ndarray:
    """Zero the scores of the ``hold_rows`` rows after each score at or above ``threshold``.

    A detection opens an alert. The rows right after it belong to the same event, so
    scoring them again would raise the same alert many times. Rows below the threshold
    outside a hold keep their score.

    Examples
    --------
    >>> hold_back_repeats(np.array([0.1, 0.9, 0.8, 0.2, 0.7]), 0.5, 2).tolist()
    [0.1, 0.9, 0.0, 0.0, 0.7]
    """
    held = np.array(scores, dtype="float64", copy=True)
    hold_until = -1
    for row, score in enumerate(held):
        if row <= hold_until:
            held[row] = 0.0
        elif score >= threshold:
            hold_until = row + hold_rows
    return held


def summarize_detectors(
    per_entity: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> pd.DataFrame:
    """Return the mean of every metric per detector over entities (rows: detectors)."""
    frames = {entity: pd.DataFrame(metrics).T for entity, metrics in per_entity.items()}
    stacked = pd.concat(frames, names=["entity", "detector"])
    return stacked.groupby(level="detector", sort=False).mean()
