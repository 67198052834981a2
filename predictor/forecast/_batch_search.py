"""Least-squares fit of non-seasonal exponential smoothing for many series at once.

statsmodels' ``ExponentialSmoothing(..., initialization_method="estimated")`` with an
additive damped trend minimises the sum of squared one-step errors over the smoothing
parameters and the initial level and trend together, with ``alpha`` in its bounds,
``0 <= beta <= alpha`` and ``0.8 <= phi <= 0.995``. Simple smoothing minimises it over
``alpha`` and the initial level. This module minimises the same sums over the same bounds
for a matrix of series, in one compiled (numba) call that loops over the series.

For fixed ``(alpha, beta, phi)`` the one-step errors are linear in the initial state:
``e = e0 - G @ x0``, where ``e0`` are the errors from a zero state and the columns of
``G`` are the predictions that a unit initial level or trend alone makes. The best
initial state is therefore a small least-squares solution, and the search runs over the
smoothing parameters only. For each series:

1. a coarse grid shared by all series, with the exact initial state at every grid point.
   ``G`` and ``G' G`` depend on the grid point only, so they are computed once per call;
   the series' ``e0`` of all grid points come from one pass over its values;
2. a compass search around the best grid point, halving the step when no neighbour
   improves the sum, with the initial state held at the grid point's exact solution;
3. the exact initial state at the final parameters.

The search works in unit coordinates: ``log(alpha)``, ``sqrt(beta / alpha)`` and
``log(1 - phi)`` scaled to [0, 1], so that grid points are dense where the sum of
squares changes fastest. The loops over time steps are compiled because each step
depends on the one before, which numpy can only vectorise across series.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

# statsmodels keeps the smoothing parameters this far inside [0, 1].
LOWER_BOUND = float(np.sqrt(np.finfo(float).eps))
# statsmodels' default bounds of the damping parameter.
DAMPING_BOUNDS = (0.8, 0.995)
_LOG_PHI_LOW = float(np.log(1.0 - DAMPING_BOUNDS[0]))
_LOG_PHI_HIGH = float(np.log(1.0 - DAMPING_BOUNDS[1]))

# Coarse grid in unit coordinates, per parameter.
_GRID_TREND = (np.linspace(0.0, 1.0, 5), np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5, 1.0]))
_GRID_SIMPLE = (np.linspace(0.0, 1.0, 5),)
_COMPASS_ROUNDS = {True: 8, False: 6}
# Step factor after a move; a ridge, such as beta against alpha, needs longer strides.
_EXPAND = 1.5
# Compass candidates evaluated side by side, from several series: enough independent
# recursions to hide each one's step latency, few enough to stay in the L2 cache.
_BLOCK_CANDIDATES = 48


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
    axes = _GRID_TREND if trend else _GRID_SIMPLE
    grid = np.zeros((int(np.prod([len(axis) for axis in axes])), 3))
    grid[:, : len(axes)] = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(
        -1, len(axes)
    )
    first_step = np.array([0.5 * (axis[1] - axis[0]) for axis in axes])
    alpha_bounds = np.array([np.log(max(min_alpha, LOWER_BOUND)), np.log1p(-LOWER_BOUND)])
    out = np.empty((6, len(values)))
    _fit_rows(
        np.ascontiguousarray(values),
        trend,
        alpha_bounds,
        grid,
        first_step,
        _COMPASS_ROUNDS[trend],
        out,
    )
    return BatchFit(*out)


@njit(cache=True)
def _params_at(
    unit: np.ndarray, trend: bool, alpha_bounds: np.ndarray
) -> tuple[float, float, float]:
    """Map a point in unit coordinates to ``(alpha, beta, phi)``."""
    low, high = alpha_bounds[0], alpha_bounds[1]
    alpha = np.exp(low + unit[0] * (high - low))
    if not trend:
        return alpha, 0.0, 0.0
    beta = alpha * unit[1] * unit[1]
    phi = 1.0 - np.exp(_LOG_PHI_LOW + unit[2] * (_LOG_PHI_HIGH - _LOG_PHI_LOW))
    return alpha, beta, phi


@njit(cache=True)
def _best_start(
    error_sq: float,
    cross_level: float,
    cross_trend: float,
    gram: np.ndarray,
    trend: bool,
) -> tuple[float, float, float]:
    """Minimise ``|e0 - G x|^2`` over ``x`` given ``|e0|^2``, ``e0' G`` and ``G' G``.

    ``gram`` holds ``(G0'G0, G0'G1, G1'G1)``. Returns the minimum and ``x``.
    """
    if trend:
        det = gram[0] * gram[2] - gram[1] * gram[1]
        level = (gram[2] * cross_level - gram[1] * cross_trend) / det
        slope = (gram[0] * cross_trend - gram[1] * cross_level) / det
    else:
        level = cross_level / gram[0]
        slope = 0.0
    sse = error_sq - cross_level * level - cross_trend * slope
    return max(sse, 0.0), level, slope


@njit(cache=True)
def _flush_tiny(value: float) -> float:
    """Return 0 for a magnitude below 1e-200, else ``value``.

    A free response with ``alpha`` near 1 decays by ``1 - alpha`` per step into
    subnormal numbers, whose arithmetic is many times slower than normal numbers'.
    The predictions from a unit state start at 1, so the dropped parts change the sums
    of squares by less than 1e-200 relative to them.
    """
    return value if abs(value) >= 1e-200 else 0.0


@njit(cache=True)
def _free_responses(
    alpha: np.ndarray, alpha_beta: np.ndarray, phi: np.ndarray, n_steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return ``G`` for each parameter point, by time step, and its ``G' G``.

    ``G[t, p, 0]`` and ``G[t, p, 1]`` are the predictions at step ``t`` of point ``p``
    from a unit initial level and a unit initial trend, with no data.
    """
    n_points = len(alpha)
    level_response = np.empty((n_steps, n_points))
    trend_response = np.empty((n_steps, n_points))
    gram = np.zeros((n_points, 3))
    for point in range(n_points):
        a, ab, damping = alpha[point], alpha_beta[point], phi[point]
        level_1, slope_1, level_2, slope_2 = 1.0, 0.0, 0.0, 1.0
        for step in range(n_steps):
            prediction_1 = level_1 + damping * slope_1
            prediction_2 = level_2 + damping * slope_2
            level_response[step, point] = prediction_1
            trend_response[step, point] = prediction_2
            gram[point, 0] += prediction_1 * prediction_1
            gram[point, 1] += prediction_1 * prediction_2
            gram[point, 2] += prediction_2 * prediction_2
            # The data are 0, so each error is minus its prediction.
            slope_1 = damping * slope_1 - ab * prediction_1
            level_1 = _flush_tiny(prediction_1 - a * prediction_1)
            slope_2 = damping * slope_2 - ab * prediction_2
            level_2 = _flush_tiny(prediction_2 - a * prediction_2)
            slope_1, slope_2 = _flush_tiny(slope_1), _flush_tiny(slope_2)
    return level_response, trend_response, gram


@njit(cache=True)
def _sums_from_zero(
    y: np.ndarray,
    alpha: np.ndarray,
    alpha_beta: np.ndarray,
    phi: np.ndarray,
    level_response: np.ndarray,
    trend_response: np.ndarray,
    sums: np.ndarray,
) -> None:
    """Store ``|e0|^2``, ``e0' G0`` and ``e0' G1`` of each parameter point in ``sums``.

    ``e0`` are the one-step errors of ``y`` from a zero initial state. The points run in
    the inner loop so that their independent recursions share each pass over ``y``.
    """
    n_points = len(alpha)
    level = np.zeros(n_points)
    slope = np.zeros(n_points)
    sums[:] = 0.0
    for step in range(len(y)):
        value = y[step]
        for point in range(n_points):
            prediction = level[point] + phi[point] * slope[point]
            error = value - prediction
            sums[0, point] += error * error
            sums[1, point] += error * level_response[step, point]
            sums[2, point] += error * trend_response[step, point]
            level[point] = prediction + alpha[point] * error
            slope[point] = phi[point] * slope[point] + alpha_beta[point] * error


@njit(cache=True)
def _sse_from_start(
    y: np.ndarray,
    alpha: np.ndarray,
    alpha_beta: np.ndarray,
    phi: np.ndarray,
    start_level: np.ndarray,
    start_trend: np.ndarray,
    sse: np.ndarray,
) -> None:
    """Store the sum of squared one-step errors of each candidate in ``sse``.

    Column ``k`` of ``y`` (shape (n_steps, n_candidates)) holds the values that candidate
    ``k`` is run on. Many independent recursions in the inner loop keep the processor
    busy while each one waits for its previous step.
    """
    level = start_level.copy()
    slope = start_trend.copy()
    sse[:] = 0.0
    for step in range(y.shape[0]):
        for k in range(len(alpha)):
            prediction = level[k] + phi[k] * slope[k]
            error = y[step, k] - prediction
            sse[k] += error * error
            level[k] = prediction + alpha[k] * error
            slope[k] = phi[k] * slope[k] + alpha_beta[k] * error


@njit(cache=True)
def _exact_start(
    y: np.ndarray, alpha: float, alpha_beta: float, phi: float, trend: bool
) -> tuple[float, float, float]:
    """Return the sum of squares with the best initial state, and that state.

    Runs three copies of the recursion: the data from a zero state, and no data from a
    unit level and from a unit trend. Their errors are ``e0``, ``-G0`` and ``-G1``.
    """
    level_0, slope_0, level_1, slope_1, level_2, slope_2 = 0.0, 0.0, 1.0, 0.0, 0.0, 1.0
    error_sq = cross_level = cross_trend = 0.0
    gram = np.zeros(3)
    for step in range(len(y)):
        prediction_0 = level_0 + phi * slope_0
        prediction_1 = level_1 + phi * slope_1
        prediction_2 = level_2 + phi * slope_2
        error_0 = y[step] - prediction_0
        error_sq += error_0 * error_0
        cross_level += error_0 * prediction_1
        cross_trend += error_0 * prediction_2
        gram[0] += prediction_1 * prediction_1
        gram[1] += prediction_1 * prediction_2
        gram[2] += prediction_2 * prediction_2
        level_0 = prediction_0 + alpha * error_0
        slope_0 = phi * slope_0 + alpha_beta * error_0
        level_1 = _flush_tiny(prediction_1 - alpha * prediction_1)
        slope_1 = _flush_tiny(phi * slope_1 - alpha_beta * prediction_1)
        level_2 = _flush_tiny(prediction_2 - alpha * prediction_2)
        slope_2 = _flush_tiny(phi * slope_2 - alpha_beta * prediction_2)
    return _best_start(error_sq, cross_level, cross_trend, gram, trend)


@njit(cache=True)
def _fit_rows(
    values: np.ndarray,
    trend: bool,
    alpha_bounds: np.ndarray,
    grid: np.ndarray,
    first_step: np.ndarray,
    rounds: int,
    out: np.ndarray,
) -> None:
    """Fit every row of ``values``; store alpha, beta, phi, level, trend and SSE in ``out``.

    ``grid`` holds the coarse grid in unit coordinates, one point per row (three columns,
    the last two unused without trend), and ``first_step`` the compass step per axis.
    """
    n_series, n_steps = values.shape
    n_points = len(grid)
    dims = len(first_step)
    grid_alpha = np.empty(n_points)
    grid_alpha_beta = np.empty(n_points)
    grid_phi = np.empty(n_points)
    for point in range(n_points):
        a, b, p = _params_at(grid[point], trend, alpha_bounds)
        grid_alpha[point], grid_alpha_beta[point], grid_phi[point] = a, a * b, p
    level_response, trend_response, gram = _free_responses(
        grid_alpha, grid_alpha_beta, grid_phi, n_steps
    )

    sums = np.empty((3, n_points))
    n_directions = 2 * dims
    block = _BLOCK_CANDIDATES // n_directions
    n_candidates = block * n_directions
    candidates = np.zeros((n_candidates, 3))
    cand_alpha = np.zeros(n_candidates)
    cand_alpha_beta = np.zeros(n_candidates)
    cand_phi = np.zeros(n_candidates)
    cand_sse = np.empty(n_candidates)
    cand_level = np.zeros(n_candidates)
    cand_trend = np.zeros(n_candidates)
    cand_values = np.zeros((n_steps, n_candidates))
    unit = np.zeros((block, 3))
    step_size = np.empty((block, dims))
    best_sse = np.empty(block)
    shift = np.empty(block)
    for first in range(0, n_series, block):
        members = min(block, n_series - first)
        for member in range(members):
            row = first + member
            # The model is shift-equivariant; centring on the first value keeps the
            # error sums free of cancellation when the level is far from 0.
            shift[member] = values[row, 0]
            y = values[row] - shift[member]
            _sums_from_zero(
                y, grid_alpha, grid_alpha_beta, grid_phi, level_response, trend_response, sums
            )
            best_sse[member], best_point = np.inf, 0
            for point in range(n_points):
                sse, level, slope = _best_start(
                    sums[0, point], sums[1, point], sums[2, point], gram[point], trend
                )
                if sse < best_sse[member]:
                    best_sse[member], best_point = sse, point
                    low = member * n_directions
                    cand_level[low : low + n_directions] = level
                    cand_trend[low : low + n_directions] = slope
            unit[member] = grid[best_point]
            step_size[member] = first_step
            for k in range(member * n_directions, (member + 1) * n_directions):
                cand_values[:, k] = y
        _compass_search(
            cand_values,
            unit,
            step_size,
            best_sse,
            members,
            trend,
            alpha_bounds,
            first_step,
            rounds,
            candidates,
            cand_alpha,
            cand_alpha_beta,
            cand_phi,
            cand_level,
            cand_trend,
            cand_sse,
        )
        for member in range(members):
            alpha, beta, phi = _params_at(unit[member], trend, alpha_bounds)
            y = cand_values[:, member * n_directions]
            sse, level, slope = _exact_start(y, alpha, alpha * beta, phi, trend)
            row = first + member
            out[0, row], out[1, row], out[2, row] = alpha, beta, phi
            out[3, row], out[4, row], out[5, row] = level + shift[member], slope, sse


@njit(cache=True)
def _compass_search(
    cand_values: np.ndarray,
    unit: np.ndarray,
    step_size: np.ndarray,
    best_sse: np.ndarray,
    members: int,
    trend: bool,
    alpha_bounds: np.ndarray,
    first_step: np.ndarray,
    rounds: int,
    candidates: np.ndarray,
    cand_alpha: np.ndarray,
    cand_alpha_beta: np.ndarray,
    cand_phi: np.ndarray,
    cand_level: np.ndarray,
    cand_trend: np.ndarray,
    cand_sse: np.ndarray,
) -> None:
    """Move each of a block of series to its best neighbour for ``rounds`` rounds.

    Series ``m`` owns candidates ``m * 2d .. m * 2d + 2d - 1`` (``d`` axes), which lie
    ``step_size[m]`` along each unit axis in both directions. A series whose neighbours
    are all worse halves its step. ``unit``, ``step_size`` and ``best_sse`` are updated
    in place; the initial states in ``cand_level`` and ``cand_trend`` stay fixed.
    """
    dims = step_size.shape[1]
    n_directions = 2 * dims
    for _ in range(rounds):
        for k in range(members * n_directions):
            member, direction = k // n_directions, k % n_directions
            axis = direction % dims
            sign = 1.0 if direction < dims else -1.0
            candidates[k] = unit[member]
            moved = unit[member, axis] + sign * step_size[member, axis]
            candidates[k, axis] = min(max(moved, 0.0), 1.0)
            a, b, p = _params_at(candidates[k], trend, alpha_bounds)
            cand_alpha[k], cand_alpha_beta[k], cand_phi[k] = a, a * b, p
        _sse_from_start(
            cand_values, cand_alpha, cand_alpha_beta, cand_phi, cand_level, cand_trend, cand_sse
        )
        for member in range(members):
            low = member * n_directions
            best = low + np.argmin(cand_sse[low : low + n_directions])
            if cand_sse[best] < best_sse[member] * (1.0 - 1e-12):
                unit[member] = candidates[best]
                best_sse[member] = cand_sse[best]
                for axis in range(dims):
                    longer = step_size[member, axis] * _EXPAND
                    step_size[member, axis] = min(longer, first_step[axis])
            else:
                step_size[member] *= 0.5
