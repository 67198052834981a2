"""Compiled per-series loops of the batch fit: in-sample predictions and residual scale.

Both run over a matrix of equal-length series in one numba call, so a fleet pays no
Python overhead per series and time step.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from predictor.forecast.exponential import MAD_TO_SIGMA


@njit(cache=True)
def fitted_paths(
    values: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    phi: np.ndarray,
    level: np.ndarray,
    trend: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the non-seasonal recursion over each finite row of ``values``.

    The arithmetic is that of :func:`~predictor.forecast._recursion.run_recursion`.
    Row ``i`` starts from ``level[i]`` and ``trend[i]``.

    Returns
    -------
    predictions : ndarray of shape (n_series, n_steps)
        One-step predictions.
    end_level, end_trend : ndarray of shape (n_series,)
        State after the last value.
    """
    n_series, n_steps = values.shape
    predictions = np.empty((n_series, n_steps))
    end_level = np.empty(n_series)
    end_trend = np.empty(n_series)
    for row in range(n_series):
        a, b, damping = alpha[row], beta[row], phi[row]
        current_level, current_trend = level[row], trend[row]
        for step in range(n_steps):
            damped = damping * current_trend
            predictions[row, step] = current_level + damped
            new_level = a * values[row, step] + (1.0 - a) * (current_level + damped)
            current_trend = b * (new_level - current_level) + (1.0 - b) * damped
            current_level = new_level
        end_level[row], end_trend[row] = current_level, current_trend
    return predictions, end_level, end_trend


@njit(cache=True)
def robust_sigmas(windows: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """Return the burst-resistant residual scale of each row, NaN in ``windows`` skipped.

    The estimate is that of ``_robust_sigma`` in :mod:`predictor.forecast.exponential`:
    ``MAD_TO_SIGMA`` times the median absolute deviation of the residuals, their
    standard deviation when that is 0, and 0 when the result is below
    ``1e-9 * max(1, max |observed value|)`` or fewer than 2 values are observed.
    """
    n_series, n_steps = windows.shape
    sigmas = np.zeros(n_series)
    residuals = np.empty(n_steps)
    for row in range(n_series):
        count = 0
        scale = 0.0
        for step in range(n_steps):
            value = windows[row, step]
            if np.isfinite(value):
                residuals[count] = value - predictions[row, step]
                scale = max(scale, abs(value))
                count += 1
        if count < 2:
            continue
        observed = residuals[:count]
        deviation = np.abs(observed - np.median(observed))
        sigma = MAD_TO_SIGMA * np.median(deviation)
        if sigma == 0.0:
            sigma = np.std(observed)
        if sigma > 1e-9 * max(1.0, scale):
            sigmas[row] = sigma
    return sigmas
