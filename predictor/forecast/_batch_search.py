"""Least-squares fit of non-seasonal exponential smoothing for many series at once.

statsmodels' ``ExponentialSmoothing(..., initialization_method="estimated")`` with an
additive damped trend minimises the sum of squared one-step errors over the smoothing
parameters and the initial level and trend together, with ``alpha`` in its bounds,
``0 <= beta <= alpha`` and ``0.8 <= phi <= 0.995``. Simple smoothing minimises it over
``alpha`` and the initial level. This module minimises the same sums over the same bounds
for a matrix of series, with numpy loops over time steps only.

For fixed ``(alpha, beta, phi)`` the one-step errors are linear in the initial state:
``e = e0 - G @ x0``, where ``e0`` are the errors from a zero state and the columns of
``G`` are the predictions that a unit initial level or trend alone makes. The best
initial state is therefore a small least-squares solution, and the search runs over the
smoothing parameters only:

1. a coarse grid shared by all series, where ``e0`` comes from one
   :func:`scipy.signal.lfilter` call per grid point, because the error recursion is the
   filter ``(1 - z^-1)(1 - phi z^-1) / (1 - c1 z^-1 + c2 z^-2)`` with
   ``c1 = 1 - alpha + phi (1 - alpha beta)`` and ``c2 = phi (1 - alpha)``;
2. a compass search around each series' best point, halving the step of a series when
   no neighbour improves it, with the initial state held at the last exact solution;
3. the exact initial state at the final parameters.

The search works in unit coordinates: ``log(alpha)``, ``sqrt(beta / alpha)`` and
``log(1 - phi)`` scaled to [0, 1], so that grid points are dense where the sum of
squares changes fastest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

# statsmodels keeps the smoothing parameters this far inside [0, 1].
LOWER_BOUND = float(np.sqrt(np.finfo(float).eps))
# statsmodels' default bounds of the damping parameter.
DAMPING_BOUNDS = (0.8, 0.995)

# Coarse grid in unit coordinates, per parameter.
_GRID_TREND = (np.linspace(0.0, 1.0, 5), np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 1.0]))
_GRID_SIMPLE = (np.linspace(0.0, 1.0, 5),)
_COMPASS_ROUNDS = {True: 8, False: 6}
# Step factor after a move; a ridge, such as beta against alpha, needs longer strides.
_EXPAND = 1.5
# Series per block in the compass search; bounds the working arrays to a few MiB.
_BLOCK_SERIES = 2048


@dataclass(frozen=True)
class BatchFit:
    """Fitted parameters and initial states, one entry per series.

    ``beta`` and ``phi`` are 0 and ``initial_trend`` is 0 for simple smoothing.
    ``sse`` is the sum of squared one-step errors at the fitted values.
    """

    alpha: np.ndarray
    beta: np.ndarray
    phi: np.ndarray
    initial_level: np.ndarray
    initial_trend: np.ndarray
    sse: np.ndarray


def fit_least_squares(values: np.ndarray, *, trend: bool, min_alpha: float) -> BatchFit:
    """Fit damped-trend or simple exponential smoothing to each row of ``values``.

    Parameters
    ----------
    values : ndarray of shape (n_series, n_steps)
        Finite observations, one series per row.
    trend : bool
        True fits an additive damped trend, False simple smoothing.
    min_alpha : float
        Lower bound of the level smoothing ``alpha``.

    Returns
    -------
    BatchFit
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2 or values.shape[1] < 3 or not np.all(np.isfinite(values)):
        raise ValueError(
            f"values: expected a finite 2-D array with at least 3 steps, got shape "
            f"{values.shape}"
        )
    # The model is shift-equivariant; centring on the first value keeps the error sums
    # free of cancellation when the level is far from 0.
    shift = values[:, 0].copy()
    centred = values - shift[:, None]
    by_time = np.ascontiguousarray(centred.T)

    unit, sse, start = _coarse_grid(centred, trend, min_alpha)
    axes = _GRID_TREND if trend else _GRID_SIMPLE
    step = np.tile([0.5 * (axis[1] - axis[0]) for axis in axes], (len(unit), 1))
    unit, sse, step = _compass_search(
        by_time, unit, sse, start, step, _COMPASS_ROUNDS[trend], trend, min_alpha
    )
    alpha, beta, phi = _unit_to_params(unit, trend, min_alpha)
    sse, start = _profile_start(by_time, alpha, beta, phi, trend)
    return BatchFit(
        alpha=alpha,
        beta=beta,
        phi=phi,
        initial_level=start[:, 0] + shift,
        initial_trend=start[:, 1],
        sse=sse,
    )


def _unit_to_params(
    unit: np.ndarray, trend: bool, min_alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map unit coordinates of shape (..., 3) or (..., 1) to ``(alpha, beta, phi)``."""
    low = np.log(max(min_alpha, LOWER_BOUND))
    high = np.log1p(-LOWER_BOUND)
    alpha = np.exp(low + unit[..., 0] * (high - low))
    if not trend:
        return alpha, np.zeros_like(alpha), np.zeros_like(alpha)
    beta = alpha * unit[..., 1] ** 2
    low_phi, high_phi = (np.log(1.0 - bound) for bound in DAMPING_BOUNDS)
    phi = 1.0 - np.exp(low_phi + unit[..., 2] * (high_phi - low_phi))
    return alpha, beta, phi


def _coarse_grid(
    centred: np.ndarray, trend: bool, min_alpha: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return each series' best grid point, its sum of squares and initial state."""
    axes = _GRID_TREND if trend else _GRID_SIMPLE
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))
    alphas, betas, phis = _unit_to_params(grid, trend, min_alpha)
    n_series, n_steps = centred.shape
    best_sse = np.full(n_series, np.inf)
    best_point = np.zeros(n_series, dtype=int)
    best_start = np.zeros((n_series, 2))
    for point, (alpha, beta, phi) in enumerate(zip(alphas, betas, phis, strict=True)):
        c1 = 1.0 - alpha + phi * (1.0 - alpha * beta)
        c2 = phi * (1.0 - alpha)
        errors = lfilter([1.0, -(1.0 + phi), phi], [1.0, -c1, c2], centred, axis=1)
        response = _free_response(alpha, beta, phi, c1, c2, n_steps, trend)
        sse, start = _best_start(
            np.einsum("ij,ij->i", errors, errors), errors @ response, response.T @ response
        )
        better = sse < best_sse
        best_sse[better] = sse[better]
        best_point[better] = point
        best_start[better, : response.shape[1]] = start[better]
    return grid[best_point], best_sse, best_start


def _free_response(
    alpha: float, beta: float, phi: float, c1: float, c2: float, n_steps: int, trend: bool
) -> np.ndarray:
    """Return the predictions made from a unit initial level (and trend) and no data.

    Column ``i`` is ``w' D^t e_i`` for ``t = 0..n_steps-1``, with ``w = (1, phi)`` and
    ``D`` the state transition with the error fed back; it obeys the homogeneous
    recursion of the error filter from ``t = 2`` on.
    """
    first = np.array([1.0, phi])
    second = np.array([1.0 - alpha - phi * alpha * beta, phi * (1.0 - alpha) + phi**2 * (1.0 - alpha * beta)])
    impulse = np.zeros((n_steps, 2))
    impulse[0] = first
    impulse[1] = second - c1 * first
    response = lfilter([1.0], [1.0, -c1, c2], impulse, axis=0)
    return response if trend else response[:, :1]


def _best_start(
    error_sq: np.ndarray, cross: np.ndarray, gram: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise ``|e0 - G x|^2`` over ``x`` given ``|e0|^2``, ``e0' G`` and ``G' G``.

    ``gram`` is shared by all series (shape (k, k)) or per series (shape (n, k, k)).
    Returns the minimum and ``x`` per series.
    """
    if gram.ndim == 2:
        start = np.linalg.solve(gram, cross.T).T
    else:
        start = np.linalg.solve(gram, cross[..., None])[..., 0]
    sse = error_sq - np.einsum("ij,ij->i", cross, start)
    return np.maximum(sse, 0.0), start


def _compass_search(
    by_time: np.ndarray,
    unit: np.ndarray,
    sse: np.ndarray,
    start: np.ndarray,
    step: np.ndarray,
    rounds: int,
    trend: bool,
    min_alpha: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move each series to its best neighbour for ``rounds`` rounds.

    Neighbours lie ``step`` along each unit axis in both directions. A series whose
    neighbours are all worse halves its step. The initial state stays at ``start``.
    Returns the new points, their sums of squares and steps.
    """
    n_series, dims = unit.shape
    directions = np.concatenate([np.eye(dims), -np.eye(dims)])
    unit, sse, step = unit.copy(), sse.copy(), step.copy()
    step_cap = step.max(axis=0)
    for _ in range(rounds):
        candidates = np.clip(unit[:, None, :] + directions[None] * step[:, None, :], 0.0, 1.0)
        alpha, beta, phi = _unit_to_params(candidates, trend, min_alpha)
        candidate_sse = _sse_from_start(by_time, alpha, beta, phi, start)
        best = candidate_sse.argmin(axis=1)
        rows = np.arange(n_series)
        improved = candidate_sse[rows, best] < sse * (1.0 - 1e-12)
        unit[improved] = candidates[rows[improved], best[improved]]
        sse[improved] = candidate_sse[rows[improved], best[improved]]
        step[improved] = np.minimum(step[improved] * _EXPAND, step_cap)
        step[~improved] *= 0.5
    return unit, sse, step


def _sse_from_start(
    by_time: np.ndarray,
    alpha: np.ndarray,
    beta: np.ndarray,
    phi: np.ndarray,
    start: np.ndarray,
) -> np.ndarray:
    """Return sums of squared one-step errors for candidate parameters of each series.

    ``by_time`` has shape (n_steps, n_series), the parameters (n_series, n_candidates)
    and ``start`` (n_series, 2) holds the initial level and trend of each series.
    """
    n_series, n_candidates = alpha.shape
    sse = np.empty((n_series, n_candidates))
    for low in range(0, n_series, _BLOCK_SERIES):
        rows = slice(low, low + _BLOCK_SERIES)
        sse[rows] = _sse_block(
            by_time[:, rows], alpha[rows], alpha[rows] * beta[rows], phi[rows], start[rows]
        )
    return sse


def _sse_block(
    by_time: np.ndarray,
    alpha: np.ndarray,
    alpha_beta: np.ndarray,
    phi: np.ndarray,
    start: np.ndarray,
) -> np.ndarray:
    shape = alpha.shape
    level = np.repeat(start[:, :1], shape[1], axis=1)
    trend = np.repeat(start[:, 1:], shape[1], axis=1)
    sse = np.zeros(shape)
    damped, prediction, error, scratch = (np.empty(shape) for _ in range(4))
    for y in by_time:
        np.multiply(phi, trend, out=damped)
        np.add(level, damped, out=prediction)
        np.subtract(y[:, None], prediction, out=error)
        np.multiply(error, error, out=scratch)
        sse += scratch
        np.multiply(alpha, error, out=scratch)
        np.add(prediction, scratch, out=level)
        np.multiply(alpha_beta, error, out=scratch)
        np.add(damped, scratch, out=trend)
    return sse


def _profile_start(
    by_time: np.ndarray, alpha: np.ndarray, beta: np.ndarray, phi: np.ndarray, trend: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Return the exact best initial state per series and the sum of squares with it.

    Runs three copies of the recursion per series: the data from a zero state, and no
    data from a unit level and from a unit trend. Their errors give ``e0`` and ``-G``.
    """
    n_steps, n_series = by_time.shape
    level = np.zeros((n_series, 3))
    level[:, 1] = 1.0
    slope = np.zeros((n_series, 3))
    slope[:, 2] = 1.0
    phi3, alpha3 = phi[:, None], alpha[:, None]
    alpha_beta3 = (alpha * beta)[:, None]
    products = np.zeros((n_series, 3, 3))
    error = np.empty((n_series, 3))
    for y in by_time:
        damped = phi3 * slope
        prediction = level + damped
        np.negative(prediction, out=error)
        error[:, 0] += y
        products += error[:, :, None] * error[:, None, :]
        level = prediction + alpha3 * error
        slope = damped + alpha_beta3 * error
    k = 3 if trend else 2
    # The free errors are -G, so only the cross terms e0' G change sign.
    sse, start = _best_start(products[:, 0, 0], -products[:, 0, 1:k], products[:, 1:k, 1:k])
    full = np.zeros((n_series, 2))
    full[:, : k - 1] = start
    return sse, full
