"""Conventions shared by the detectors: score direction, input tags, robust statistics.

Score direction
---------------
Every score in :mod:`predictor.detect` follows one direction: higher means more anomalous
(worse). PyOD's ``decision_function`` already points that way. scikit-learn's
``score_samples`` points the other way (higher is more normal), so the detectors here keep
the PyOD direction and do not declare themselves scikit-learn outlier detectors.
"""

from __future__ import annotations

import numbers

import numpy as np

from predictor.features import FEATURE_SEPARATOR

# Consistency constants that turn a spread statistic into a standard deviation under a
# normal distribution: sigma = 1.4826 * MAD = IQR / 1.349 = 1.2533 * mean absolute
# deviation. The mean absolute deviation replaces the MAD where more than half of the
# values are equal and the MAD is 0 (Iglewicz and Hoaglin, "How to Detect and Handle Outliers",
# ASQC 1993).
MAD_TO_SIGMA = 1.4826
IQR_TO_SIGMA = 1.0 / 1.349
MEAN_ABSOLUTE_DEVIATION_TO_SIGMA = 1.2533


class DetectorTagsMixin:
    """Declare the input tags shared by the detectors of this package.

    The detectors accept NaN cells (a grid point with a missing metric) and impute them
    with the training median, so the scikit-learn input tag ``allow_nan`` is set.
    """

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.input_tags.allow_nan = True
        return tags


def robust_center_scale(
    X: np.ndarray, *, spread: str = "mad", min_scale: float | np.ndarray = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Compute a robust center and scale per column, ignoring NaN cells.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training values; NaN cells are ignored.
    spread : {"mad", "iqr"}, default="mad"
        The first spread statistic tried: the median absolute deviation or the
        interquartile range, converted to a normal-consistent standard deviation.
    min_scale : float or ndarray of shape (n_features,), default=1e-3
        Floor of the scale per column, in the units of ``X``. It applies where the column
        is constant (or all NaN) in training, and wherever the spread is smaller.

    Returns
    -------
    center : ndarray of shape (n_features,)
        Column medians; 0 for columns without finite values.
    scale : ndarray of shape (n_features,)
        The first positive value of ``spread``, then 1.2533 times the mean absolute
        deviation from the median, then ``min_scale``.
    """
    finite_columns = np.isfinite(X).any(axis=0)
    floor = np.broadcast_to(np.asarray(min_scale, dtype="float64"), (X.shape[1],))
    center = np.zeros(X.shape[1])
    scale = floor.copy()
    if not finite_columns.any():
        return center, scale

    observed = X[:, finite_columns]
    median = np.nanmedian(observed, axis=0)
    if spread == "iqr":
        q75, q25 = np.nanpercentile(observed, [75, 25], axis=0)
        first = (q75 - q25) * IQR_TO_SIGMA
    else:
        first = np.nanmedian(np.abs(observed - median), axis=0) * MAD_TO_SIGMA
    mean_deviation = np.nanmean(np.abs(observed - median), axis=0)
    fallback = mean_deviation * MEAN_ABSOLUTE_DEVIATION_TO_SIGMA

    chosen = np.where(first > 0, first, fallback)
    center[finite_columns] = median
    scale[finite_columns] = np.maximum(chosen, floor[finite_columns])
    return center, scale


def scale_floor(
    X: np.ndarray,
    feature_names: np.ndarray | None,
    *,
    min_scale: float,
    min_relative_scale: float,
) -> np.ndarray:
    """Compute each column's scale floor from an absolute and a relative part.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Training values; NaN cells are ignored.
    feature_names : ndarray of str or None
        Column names ``"<metric>:<feature>"``. When given, the level of every column of a
        metric is the absolute median of that metric's ``value`` column, so a residual
        (centred on 0) gets a floor relative to the metric it came from.
    min_scale : float
        Absolute floor, in the units of ``X``.
    min_relative_scale : float
        Floor as a share of the column's level.

    Returns
    -------
    ndarray of shape (n_features,)
        ``max(min_scale, min_relative_scale * level)`` per column, where ``level`` is the
        absolute training median (0 for a column without finite values).
    """
    finite_columns = np.isfinite(X).any(axis=0)
    level = np.zeros(X.shape[1])
    if finite_columns.any():
        level[finite_columns] = np.abs(np.nanmedian(X[:, finite_columns], axis=0))
    if feature_names is not None:
        names = [str(name) for name in feature_names]
        value_level = {
            name.rpartition(FEATURE_SEPARATOR)[0]: level[j]
            for j, name in enumerate(names)
            if name.endswith(f"{FEATURE_SEPARATOR}value")
        }
        for j, name in enumerate(names):
            metric = name.rpartition(FEATURE_SEPARATOR)[0]
            if FEATURE_SEPARATOR in name and metric in value_level:
                level[j] = value_level[metric]
    return np.maximum(min_scale, min_relative_scale * level)


def check_int_param(value: object, name: str, minimum: int) -> int:
    """Return ``value`` as an int; raise TypeError or ValueError naming ``name`` if invalid."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return int(value)


def check_float_param(
    value: object, name: str, low: float, high: float, *, low_open: bool = True
) -> float:
    """Return ``value`` as a float in the range; raise TypeError or ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {value!r}")
    number = float(value)
    above_low = number > low if low_open else number >= low
    if not (above_low and number <= high and np.isfinite(number)):
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}: expected a number in {bracket}{low}, {high}], got {value!r}")
    return number
