"""Calibration of a risk score into the probability of a failure within a horizon.

The fused risk is on the probability scale but is not an observed failure frequency.
Where labeled failures exist, :class:`ScoreCalibrator` learns the monotone map from score
to the probability that a labeled failure starts or is ongoing within the horizon. The
map is fitted on an earlier part of a timeline and judged on a later part with the Brier
score and a reliability table, against a constant predictor that always gives the base
rate of the fitted part.

Target definition
-----------------
For row ``t`` of a series with 0/1 anomaly labels ``y`` and a horizon of ``h`` rows,
``target[t] = max(y[t], ..., y[t + h - 1])``: 1 when a labeled anomalous row starts or is
ongoing in the ``h`` rows that begin with row ``t`` itself. With 1-minute rows and
``h = 60`` it is "a failure within the next hour, counting the current minute".
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from predictor.exceptions import CalibrationWarning

logger = logging.getLogger(__name__)

METHODS = ("isotonic", "platt")
POOLINGS = ("fleet", "entity")
#: Version of the ``to_dict`` layout; ``from_dict`` rejects other versions.
FORMAT_VERSION = 1


def failure_within_horizon(labels: ArrayLike, horizon_rows: int) -> np.ndarray:
    """Return, per row, whether a labeled anomaly starts or is ongoing within the horizon.

    Parameters
    ----------
    labels : array-like of 0 and 1, shape (n_rows,)
        Anomaly label per row, in time order.
    horizon_rows : int
        Number of rows in the horizon, counting the current row.

    Returns
    -------
    ndarray of int8, shape (n_rows,)
        ``target[t] = max(labels[t : t + horizon_rows])``. The last ``horizon_rows - 1``
        rows see a horizon cut short by the end of the series; callers that need a full
        horizon drop them (see :func:`split_out_of_time`).

    Raises
    ------
    ValueError
        If ``labels`` contains a value other than 0 or 1 or ``horizon_rows`` is below 1.

    Examples
    --------
    >>> failure_within_horizon([0, 0, 0, 1, 1, 0, 0], 2).tolist()
    [0, 0, 1, 1, 1, 0, 0]
    """
    flags = _check_labels(labels, "labels")
    horizon_rows = _check_horizon(horizon_rows)

    # A row is positive when the next labeled row at or after it lies within h - 1 rows.
    n_rows = len(flags)
    positions = np.where(flags == 1, np.arange(n_rows), n_rows + horizon_rows)
    next_labeled = np.minimum.accumulate(positions[::-1])[::-1]
    return (next_labeled - np.arange(n_rows) < horizon_rows).astype(np.int8)


def _check_labels(labels: ArrayLike, name: str) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of 0 and 1, got shape {array.shape}")
    if array.size and not np.isin(array, (0, 1)).all():
        bad = array[~np.isin(array, (0, 1))][0].item()
        raise ValueError(f"{name}: expected only 0 and 1, got {bad!r}")
    return array.astype(np.int8)


def _check_horizon(horizon_rows: int) -> int:
    if isinstance(horizon_rows, bool) or int(horizon_rows) != horizon_rows or horizon_rows < 1:
        raise ValueError(f"horizon_rows: expected an integer >= 1, got {horizon_rows!r}")
    return int(horizon_rows)


def _check_scores(scores: ArrayLike, name: str, *, allow_nan: bool) -> np.ndarray:
    array = np.asarray(scores, dtype="float64")
    if array.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of scores, got shape {array.shape}")
    bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        expected = "finite numbers or NaN" if allow_nan else "finite numbers"
        raise ValueError(f"{name}: expected {expected}, got {float(array[row])!r} at row {row}")
    return array


class ScoreCalibrator(BaseEstimator):
    """Monotone map from a score to the probability of a failure within the horizon.

    Parameters
    ----------
    method : {"isotonic", "platt"}, default="isotonic"
        ``isotonic`` fits scikit-learn's non-decreasing :class:`IsotonicRegression`;
        ``platt`` fits a logistic curve ``1 / (1 + exp(-(a * score + b)))`` with
        :class:`LogisticRegression` and no penalty.

    Attributes
    ----------
    thresholds_ : ndarray
        Isotonic only: increasing scores at which the map is known.
    probabilities_ : ndarray
        Isotonic only: the non-decreasing probabilities at ``thresholds_``. Between them
        the map interpolates linearly, and outside them it is constant.
    coef_, intercept_ : float
        Platt only: the slope ``a >= 0`` and the intercept ``b``.
    base_rate_ : float
        Share of positive targets seen in ``fit``.
    n_samples_ : int
        Number of rows seen in ``fit``.

    Notes
    -----
    Higher scores never get lower probabilities: isotonic regression is fitted as
    non-decreasing, and a Platt fit whose slope comes out negative (the score ranks
    failures below normal rows) is replaced by the constant base rate with a
    :class:`~predictor.exceptions.CalibrationWarning`.

    The fitted state is a handful of plain numbers, so :meth:`to_dict` and
    :meth:`from_dict` store and load it as JSON without pickle.

    Examples
    --------
    >>> calibrator = ScoreCalibrator().fit([0.1, 0.2, 0.8, 0.9], [0, 0, 0, 1])
    >>> calibrator.transform([0.0, 0.85, 1.0]).round(6).tolist()
    [0.0, 0.5, 1.0]
    """

    def __init__(self, method: str = "isotonic") -> None:
        self.method = method

    def fit(self, scores: ArrayLike, target: ArrayLike) -> ScoreCalibrator:
        """Fit the map from ``scores`` to the 0/1 ``target``.

        Parameters
        ----------
        scores : array-like of float, shape (n_samples,)
            Finite scores; higher means worse.
        target : array-like of 0 and 1, shape (n_samples,)
            1 where a failure followed within the horizon.

        Returns
        -------
        ScoreCalibrator
            The fitted calibrator.

        Raises
        ------
        ValueError
            If ``method`` is unknown, the arrays differ in length, a score is not finite,
            or ``target`` does not contain both 0 and 1.
        """
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {list(METHODS)}, got {self.method!r}")
        x = _check_scores(scores, "scores", allow_nan=False)
        y = _check_labels(target, "target")
        if len(x) != len(y):
            raise ValueError(
                f"target: expected one value per score ({len(x)}), got {len(y)} values"
            )
        positives = int(y.sum())
        if positives in (0, len(y)):
            raise ValueError(
                f"target: expected both failures (1) and normal rows (0), got {positives} "
                f"ones in {len(y)} rows; calibration needs both"
            )

        self.base_rate_ = positives / len(y)
        self.n_samples_ = len(y)
        if self.method == "isotonic":
            isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True)
            isotonic.fit(x, y)
            self.thresholds_ = np.asarray(isotonic.X_thresholds_, dtype="float64")
            self.probabilities_ = np.asarray(isotonic.y_thresholds_, dtype="float64")
        else:
            self._fit_platt(x, y)
        return self

    def _fit_platt(self, x: np.ndarray, y: np.ndarray) -> None:
        logistic = LogisticRegression(C=np.inf).fit(x[:, np.newaxis], y)
        self.coef_ = float(logistic.coef_[0, 0])
        self.intercept_ = float(logistic.intercept_[0])
        if self.coef_ < 0.0:
            warnings.warn(
                f"Platt calibration: fitted slope {self.coef_:.4g} is negative, so higher "
                "scores went with fewer failures; using the constant base rate "
                f"{self.base_rate_:.4g} instead",
                CalibrationWarning,
                stacklevel=3,
            )
            self.coef_ = 0.0
            self.intercept_ = math.log(self.base_rate_ / (1.0 - self.base_rate_))

    def transform(self, scores: ArrayLike) -> np.ndarray:
        """Return the probability of a failure within the horizon for each score.

        Parameters
        ----------
        scores : array-like of float, shape (n_samples,)
            Scores on the scale used in ``fit``. NaN (an unknown score) stays NaN.

        Returns
        -------
        ndarray of float, shape (n_samples,)
            Probabilities in [0, 1], non-decreasing in the score.

        Raises
        ------
        ValueError
            If a score is infinite or the input is not 1-D.
        """
        check_is_fitted(self, "base_rate_")
        x = _check_scores(scores, "scores", allow_nan=True)
        if self.method == "isotonic":
            probability = np.interp(x, self.thresholds_, self.probabilities_)
        else:
            probability = 1.0 / (1.0 + np.exp(-(self.coef_ * x + self.intercept_)))
        probability[np.isnan(x)] = np.nan
        return np.clip(probability, 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        """Return the fitted state as plain JSON-compatible numbers."""
        check_is_fitted(self, "base_rate_")
        state: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "base_rate": float(self.base_rate_),
            "n_samples": int(self.n_samples_),
        }
        if self.method == "isotonic":
            state["thresholds"] = [float(value) for value in self.thresholds_]
            state["probabilities"] = [float(value) for value in self.probabilities_]
        else:
            state["coef"] = float(self.coef_)
            state["intercept"] = float(self.intercept_)
        return state

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> ScoreCalibrator:
        """Rebuild a fitted calibrator from :meth:`to_dict` output.

        Raises
        ------
        TypeError
            If ``state`` is not a mapping.
        ValueError
            If a key is missing, the version or method is unknown, or the numbers do not
            describe a monotone map into [0, 1].
        """
        if not isinstance(state, Mapping):
            raise TypeError(f"calibrator state: expected a mapping, got {state!r}")
        version = state.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(
                f"calibrator state, key 'format_version': expected {FORMAT_VERSION}, "
                f"got {version!r}"
            )
        method = state.get("method")
        if method not in METHODS:
            raise ValueError(
                f"calibrator state, key 'method': expected one of {list(METHODS)}, got {method!r}"
            )

        calibrator = cls(method=method)
        calibrator.base_rate_ = _state_number(state, "base_rate", low=0.0, high=1.0)
        calibrator.n_samples_ = int(_state_number(state, "n_samples", low=1.0))
        if method == "isotonic":
            calibrator.thresholds_, calibrator.probabilities_ = _isotonic_state(state)
        else:
            calibrator.coef_ = _state_number(state, "coef", low=0.0)
            calibrator.intercept_ = _state_number(state, "intercept")
        return calibrator


def _state_number(
    state: Mapping[str, Any], key: str, low: float = -math.inf, high: float = math.inf
) -> float:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"calibrator state, key {key!r}: expected a finite number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(
            f"calibrator state, key {key!r}: expected a value in [{low}, {high}], got {value!r}"
        )
    return float(value)


def _isotonic_state(state: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for key in ("thresholds", "probabilities"):
        values = state.get(key)
        if not isinstance(values, list) or not values:
            raise ValueError(
                f"calibrator state, key {key!r}: expected a non-empty list of numbers, "
                f"got {values!r}"
            )
        array = np.asarray(values, dtype="float64")
        if array.ndim != 1 or not np.isfinite(array).all() or (np.diff(array) < 0).any():
            raise ValueError(
                f"calibrator state, key {key!r}: expected finite non-decreasing numbers, "
                f"got {values!r}"
            )
        arrays.append(array)
    thresholds, probabilities = arrays
    if len(thresholds) != len(probabilities):
        raise ValueError(
            f"calibrator state: expected as many probabilities as thresholds "
            f"({len(thresholds)}), got {len(probabilities)}"
        )
    if probabilities[0] < 0.0 or probabilities[-1] > 1.0:
        raise ValueError(
            f"calibrator state, key 'probabilities': expected values in [0, 1], got "
            f"{probabilities[0]!r} to {probabilities[-1]!r}"
        )
    return thresholds, probabilities


def brier_score(probability: ArrayLike, target: ArrayLike) -> float:
    """Return the Brier score, the mean of ``(probability - target) ** 2``.

    Lower is better: 0 is a perfect forecast, and a constant forecast equal to the
    observed rate ``r`` scores ``r * (1 - r)``.

    Raises
    ------
    ValueError
        If the arrays are empty or differ in length, a probability lies outside [0, 1],
        or a target is not 0 or 1.

    Examples
    --------
    >>> round(brier_score([0.9, 0.2, 0.5], [1, 0, 0]), 6)
    0.1
    """
    p = _check_probability(probability)
    y = _check_labels(target, "target")
    if len(p) != len(y) or len(p) == 0:
        raise ValueError(
            f"target: expected one value per probability ({len(p)}, at least 1), "
            f"got {len(y)} values"
        )
    return float(np.mean((p - y) ** 2))


def _check_probability(probability: ArrayLike) -> np.ndarray:
    p = _check_scores(probability, "probability", allow_nan=False)
    if p.size and (p.min() < 0.0 or p.max() > 1.0):
        bad = float(p[(p < 0.0) | (p > 1.0)][0])
        raise ValueError(f"probability: expected values in [0, 1], got {bad!r}")
    return p


def reliability_table(probability: ArrayLike, target: ArrayLike, n_bins: int = 10) -> pd.DataFrame:
    """Return the observed failure rate per bin of predicted probability.

    Parameters
    ----------
    probability : array-like of float in [0, 1]
        Predicted probabilities.
    target : array-like of 0 and 1
        Observed outcomes, one per probability.
    n_bins : int, default=10
        Number of equal-width bins over [0, 1]. Bin ``i`` contains probabilities in
        ``[i / n_bins, (i + 1) / n_bins)``, and the last bin also contains 1.0.

    Returns
    -------
    pandas.DataFrame
        One row per bin, empty bins included: ``bin_low``, ``bin_high``, ``count``,
        ``mean_predicted`` and ``observed_rate`` (NaN for an empty bin). A calibrated
        forecast has ``observed_rate`` close to ``mean_predicted`` in every bin.

    Raises
    ------
    ValueError
        If ``n_bins`` is below 1 or the inputs are invalid as in :func:`brier_score`.
    """
    if isinstance(n_bins, bool) or int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins: expected an integer >= 1, got {n_bins!r}")
    p = _check_probability(probability)
    y = _check_labels(target, "target")
    if len(p) != len(y):
        raise ValueError(f"target: expected one value per probability ({len(p)}), got {len(y)}")

    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    bins = np.clip(np.floor(p * n_bins).astype(int), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    predicted_sum = np.bincount(bins, weights=p, minlength=n_bins)
    observed_sum = np.bincount(bins, weights=y, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_predicted = np.where(count > 0, predicted_sum / count, np.nan)
        observed_rate = np.where(count > 0, observed_sum / count, np.nan)
    return pd.DataFrame(
        {
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "count": count.astype("int64"),
            "mean_predicted": mean_predicted,
            "observed_rate": observed_rate,
        }
    )


@dataclass(frozen=True)
class OutOfTimeSplit:
    """Rows of one series for an out-of-time calibration, with their targets.

    Attributes
    ----------
    fit_rows : slice
        Rows whose target is known from labels of the fit part alone.
    fit_target : ndarray
        Target of ``fit_rows``.
    eval_rows : slice
        Rows of the later part whose horizon ends inside the series.
    eval_target : ndarray
        Target of ``eval_rows``.
    """

    fit_rows: slice
    fit_target: np.ndarray
    eval_rows: slice
    eval_target: np.ndarray


def split_out_of_time(labels: ArrayLike, horizon_rows: int, fit_fraction: float) -> OutOfTimeSplit:
    """Split a labeled series into an earlier part to fit and a later part to evaluate.

    The fit part is the first ``floor(fit_fraction * n_rows)`` rows. Its last
    ``horizon_rows - 1`` rows are left out of fitting, because their target depends on
    labels of the evaluated part. The evaluated part starts right after the fit part and
    leaves out its own last ``horizon_rows - 1`` rows, whose horizon runs past the end of
    the labels. So the fit never reads a label of the evaluated part.

    Raises
    ------
    ValueError
        If ``fit_fraction`` is not in (0, 1), or either part has no row left.

    Examples
    --------
    >>> split = split_out_of_time([0, 0, 1, 0, 0, 0, 1, 0], horizon_rows=2, fit_fraction=0.5)
    >>> split.fit_rows, split.fit_target.tolist()
    (slice(0, 3, None), [0, 1, 1])
    >>> split.eval_rows, split.eval_target.tolist()
    (slice(4, 7, None), [0, 1, 1])
    """
    flags = _check_labels(labels, "labels")
    horizon_rows = _check_horizon(horizon_rows)
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction: expected a number in (0, 1), got {fit_fraction!r}")

    n_rows = len(flags)
    n_fit = math.floor(fit_fraction * n_rows)
    fit_stop = n_fit - horizon_rows + 1
    eval_stop = n_rows - horizon_rows + 1
    if fit_stop < 1 or eval_stop <= n_fit:
        raise ValueError(
            f"labels: {n_rows} rows are too few to split at fit_fraction={fit_fraction!r} "
            f"with horizon_rows={horizon_rows}; each part needs more than {horizon_rows - 1} rows"
        )
    fit_target = failure_within_horizon(flags[:n_fit], horizon_rows)[:fit_stop]
    eval_target = failure_within_horizon(flags[n_fit:], horizon_rows)[: eval_stop - n_fit]
    return OutOfTimeSplit(slice(0, fit_stop), fit_target, slice(n_fit, eval_stop), eval_target)


@dataclass
class OutOfTimeResult:
    """Out-of-time calibration of one series, evaluated on its later part.

    Attributes
    ----------
    brier : float
        Brier score of the calibrated probabilities on the evaluated part.
    brier_base_rate : float
        Brier score, on the same rows, of a constant forecast equal to ``base_rate``.
    base_rate : float
        Share of positive targets in the fit part that the calibrator was fitted on.
    n_fit, n_eval : int
        Rows used to fit and to evaluate.
    probability, target : ndarray
        Calibrated probabilities and targets of the evaluated rows.
    """

    brier: float
    brier_base_rate: float
    base_rate: float
    n_fit: int
    n_eval: int
    probability: np.ndarray = field(repr=False)
    target: np.ndarray = field(repr=False)


@dataclass
class FleetCalibrationResult:
    """Out-of-time calibration of several series, evaluated on each series' later part.

    Attributes
    ----------
    per_entity : dict of str to OutOfTimeResult
        Result per series.
    pooling : str
        ``fleet`` (one calibrator on all fit parts) or ``entity`` (one per series).
    reliability : pandas.DataFrame
        :func:`reliability_table` of all evaluated rows together.
    brier, brier_base_rate : float
        Brier scores over all evaluated rows together.
    """

    per_entity: dict[str, OutOfTimeResult]
    pooling: str
    reliability: pd.DataFrame
    brier: float
    brier_base_rate: float

    def mean(self) -> dict[str, float]:
        """Return the mean over series of ``brier`` and ``brier_base_rate``."""
        results = list(self.per_entity.values())
        return {
            "brier": float(np.mean([result.brier for result in results])),
            "brier_base_rate": float(np.mean([result.brier_base_rate for result in results])),
        }


def evaluate_out_of_time(
    series: Mapping[str, tuple[ArrayLike, ArrayLike]],
    horizon_rows: int,
    *,
    method: str = "isotonic",
    fit_fraction: float = 0.5,
    pooling: str = "fleet",
    n_bins: int = 10,
) -> FleetCalibrationResult:
    """Fit calibration on the earlier part of each series and evaluate it on the later part.

    Parameters
    ----------
    series : mapping of str to (scores, labels)
        Per series, the scores and the 0/1 anomaly labels of its rows in time order.
    horizon_rows : int
        Rows in the horizon, counting the current row (see :func:`failure_within_horizon`).
    method : {"isotonic", "platt"}, default="isotonic"
    fit_fraction : float, default=0.5
        Share of each series, from its start, used to fit (see :func:`split_out_of_time`).
    pooling : {"fleet", "entity"}, default="fleet"
        ``fleet`` fits one calibrator on the fit parts of all series together, and its
        base-rate forecast is the rate over all fit parts. ``entity`` fits one calibrator
        per series on that series' fit part, and its base rate is that series' own rate.
        A series whose fit part contains only one class is forecast with that constant
        rate.
    n_bins : int, default=10
        Bins of the pooled reliability table.

    Returns
    -------
    FleetCalibrationResult

    Raises
    ------
    ValueError
        If ``series`` is empty, scores and labels differ in length, a split leaves no
        rows, or (fleet pooling) the fit parts together hold only one class.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling: expected one of {list(POOLINGS)}, got {pooling!r}")
    if not series:
        raise ValueError("series: expected at least one (scores, labels) pair, got none")
    prepared = {
        name: _prepare_series(name, scores, labels, horizon_rows, fit_fraction)
        for name, (scores, labels) in series.items()
    }

    if pooling == "fleet":
        fit_scores = np.concatenate([x[split.fit_rows] for x, split in prepared.values()])
        fit_target = np.concatenate([split.fit_target for _, split in prepared.values()])
        calibrator = ScoreCalibrator(method).fit(fit_scores, fit_target)
        per_entity = {
            name: _evaluate(x, split, calibrator, calibrator.base_rate_, len(fit_target))
            for name, (x, split) in prepared.items()
        }
    else:
        per_entity = {
            name: _evaluate_alone(name, x, split, method) for name, (x, split) in prepared.items()
        }

    probability = np.concatenate([result.probability for result in per_entity.values()])
    target = np.concatenate([result.target for result in per_entity.values()])
    base_forecast = np.concatenate(
        [np.full(result.n_eval, result.base_rate) for result in per_entity.values()]
    )
    result = FleetCalibrationResult(
        per_entity=per_entity,
        pooling=pooling,
        reliability=reliability_table(probability, target, n_bins),
        brier=brier_score(probability, target),
        brier_base_rate=brier_score(base_forecast, target),
    )
    logger.info(
        "calibration: %s out-of-time over %d series (%s pooling), %d rows evaluated, "
        "Brier %.5f against %.5f for the base rate",
        method,
        len(per_entity),
        pooling,
        len(target),
        result.brier,
        result.brier_base_rate,
    )
    return result


def _prepare_series(
    name: str, scores: ArrayLike, labels: ArrayLike, horizon_rows: int, fit_fraction: float
) -> tuple[np.ndarray, OutOfTimeSplit]:
    x = _check_scores(scores, f"scores of {name!r}", allow_nan=False)
    flags = _check_labels(labels, f"labels of {name!r}")
    if len(x) != len(flags):
        raise ValueError(
            f"labels of {name!r}: expected one label per score ({len(x)}), got {len(flags)}"
        )
    return x, split_out_of_time(flags, horizon_rows, fit_fraction)


def _evaluate(
    x: np.ndarray,
    split: OutOfTimeSplit,
    calibrator: ScoreCalibrator | None,
    base_rate: float,
    n_fit: int,
) -> OutOfTimeResult:
    target = split.eval_target
    if calibrator is None:
        probability = np.full(len(target), base_rate)
    else:
        probability = calibrator.transform(x[split.eval_rows])
    return OutOfTimeResult(
        brier=brier_score(probability, target),
        brier_base_rate=brier_score(np.full(len(target), base_rate), target),
        base_rate=float(base_rate),
        n_fit=n_fit,
        n_eval=len(target),
        probability=probability,
        target=target,
    )


def _evaluate_alone(
    name: str, x: np.ndarray, split: OutOfTimeSplit, method: str
) -> OutOfTimeResult:
    base_rate = float(split.fit_target.mean())
    calibrator = None
    if 0 < split.fit_target.sum() < len(split.fit_target):
        calibrator = ScoreCalibrator(method).fit(x[split.fit_rows], split.fit_target)
    else:
        logger.info(
            "calibration: %s has only one class in its %d fit rows; forecasting its base "
            "rate %.4f",
            name,
            len(split.fit_target),
            base_rate,
        )
    return _evaluate(x, split, calibrator, base_rate, len(split.fit_target))
