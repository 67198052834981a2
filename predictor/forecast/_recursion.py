"""Fixed-parameter exponential-smoothing recursion and its prediction variance.

The recursion is the additive Holt-Winters form that statsmodels 0.15 uses in
``statsmodels.tsa.holtwinters.ExponentialSmoothing`` (additive trend, optional damping,
optional additive seasonality), written so that it can run forward over new
observations without refitting. With the innovation ``e_t = y_t - yhat_t`` it reads::

    yhat_t = l_{t-1} + phi * b_{t-1} + s_{t-m}
    l_t    = alpha * (y_t - s_{t-m}) + (1 - alpha) * (l_{t-1} + phi * b_{t-1})
    b_t    = beta * (l_t - l_{t-1}) + (1 - beta) * phi * b_{t-1}
    s_t    = gamma * (y_t - l_{t-1} - phi * b_{t-1}) + (1 - gamma) * s_{t-m}

A model without trend has ``beta = phi = 0`` and ``b = 0``. A model without seasonality
has ``gamma = 0`` and no seasonal state. An undamped trend has ``phi = 1``.

Forecasts ``h`` steps ahead use the seasonal component ``s_{t+h-m(k+1)}`` with
``k = (h - 1) // m``, the last one updated for that phase of the season. At whole
multiples of the season this is the newest component ``s_t``.
``HoltWintersResults.forecast`` in statsmodels 0.15 uses ``s_{t-m}`` there instead, so
the two differ only at those steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SmoothingParams:
    """Smoothing parameters of the additive exponential-smoothing recursion.

    Parameters
    ----------
    alpha : float
        Level smoothing, in [0, 1].
    beta : float
        Trend smoothing in the Holt form (statsmodels ``smoothing_trend``); 0 without trend.
    phi : float
        Trend damping; 1 for an undamped trend, 0 without trend.
    gamma : float
        Seasonal smoothing; 0 without seasonality.
    """

    alpha: float
    beta: float = 0.0
    phi: float = 0.0
    gamma: float = 0.0


@dataclass(frozen=True)
class SmoothingState:
    """Level, trend and seasonal components after one observation.

    ``season[k]`` is the seasonal component of the observation ``k + 1`` steps later, so
    ``season[0]`` applies to the next observation. An empty array means no seasonality.
    """

    level: float
    trend: float
    season: np.ndarray


@dataclass(frozen=True)
class SmoothingPath:
    """Output of :func:`run_recursion` over ``n`` observations.

    Attributes
    ----------
    predictions : ndarray of shape (n,)
        One-step-ahead prediction of each observation, made before it was seen.
    levels, trends : ndarray of shape (n,)
        Level and trend after each observation.
    season_ahead : ndarray of shape (n, horizon_steps)
        Seasonal component ``h`` steps after each observation, for ``h = 1..horizon_steps``;
        zeros without seasonality.
    final_state : SmoothingState
        State after the last observation.
    """

    predictions: np.ndarray
    levels: np.ndarray
    trends: np.ndarray
    season_ahead: np.ndarray
    final_state: SmoothingState


def run_recursion(
    values: np.ndarray,
    params: SmoothingParams,
    state: SmoothingState,
    horizon_steps: int = 0,
) -> SmoothingPath:
    """Run the smoothing recursion over ``values`` from ``state`` with fixed parameters.

    A NaN value is a missing observation: the state advances by prediction only
    (innovation zero), so the level moves by the damped trend and the seasonal
    component is kept.

    Parameters
    ----------
    values : ndarray of shape (n,)
        Observations on consecutive grid steps; NaN marks a missing one.
    params : SmoothingParams
    state : SmoothingState
        State after the observation just before ``values[0]``.
    horizon_steps : int, default=0
        Number of seasonal components ahead to record per step in ``season_ahead``.

    Returns
    -------
    SmoothingPath
    """
    n = len(values)
    alpha, beta, phi, gamma = params.alpha, params.beta, params.phi, params.gamma
    m = len(state.season)
    # Python floats and a list keep the per-step cost low; the loop is inherently serial.
    ring = [float(v) for v in state.season]
    level, trend = float(state.level), float(state.trend)

    predictions = np.empty(n)
    levels = np.empty(n)
    trends = np.empty(n)
    season_ahead = np.zeros((n, horizon_steps))
    ahead_offsets = np.arange(1, horizon_steps + 1)
    ring_array = np.asarray(ring, dtype=float)

    for i, y in enumerate(np.asarray(values, dtype=float).tolist()):
        position = i % m if m else 0
        seasonal = ring[position] if m else 0.0
        damped_trend = phi * trend
        predictions[i] = level + damped_trend + seasonal

        if y != y:  # NaN: no innovation
            new_level = level + damped_trend
            new_trend = damped_trend
        else:
            new_level = alpha * (y - seasonal) + (1.0 - alpha) * (level + damped_trend)
            new_trend = beta * (new_level - level) + (1.0 - beta) * damped_trend
            if m:
                ring[position] = gamma * (y - level - damped_trend) + (1.0 - gamma) * seasonal
                ring_array[position] = ring[position]
        level, trend = new_level, new_trend
        levels[i] = level
        trends[i] = trend
        if m and horizon_steps:
            season_ahead[i] = ring_array[(position + ahead_offsets) % m]

    # Rotate the ring so that index 0 is the slot of the next observation.
    next_position = n % m if m else 0
    final_season = np.roll(np.asarray(ring, dtype=float), -next_position) if m else np.empty(0)
    return SmoothingPath(
        predictions=predictions,
        levels=levels,
        trends=trends,
        season_ahead=season_ahead,
        final_state=SmoothingState(level=level, trend=trend, season=final_season),
    )


def damped_trend_sums(phi: float | np.ndarray, horizon_steps: int) -> np.ndarray:
    """Return ``phi + phi**2 + ... + phi**h`` for ``h = 1..horizon_steps``.

    This is the multiplier of the trend in the ``h``-step forecast: ``h`` for an
    undamped trend (``phi = 1``) and 0 without trend (``phi = 0``). An array ``phi``
    of shape (..., 1) gives one row of sums per entry.
    """
    return np.cumsum(np.power(phi, np.arange(1, horizon_steps + 1, dtype=float)), axis=-1)


def variance_factors(params: SmoothingParams, season_steps: int, horizon_steps: int) -> np.ndarray:
    """Return the ``h``-step forecast variance in units of the one-step variance.

    In innovations form the recursion above is ``l_t = l_{t-1} + phi * b_{t-1} + alpha * e_t``,
    ``b_t = phi * b_{t-1} + alpha * beta * e_t`` and ``s_t = s_{t-m} + gamma * e_t``. One
    innovation therefore moves the mean forecast ``j`` steps later by
    ``c_j = alpha * (1 + beta * phi_j) + gamma * [j mod m == 0]`` with
    ``phi_j = phi + ... + phi**j``. With independent innovations of equal variance the
    ``h``-step error variance is ``v_h = 1 + sum_{j=1}^{h-1} c_j**2`` times the one-step
    variance.

    Parameters
    ----------
    params : SmoothingParams
    season_steps : int
        Season length ``m``; 0 without seasonality.
    horizon_steps : int

    Returns
    -------
    ndarray of shape (horizon_steps,)
        ``v_h`` for ``h = 1..horizon_steps``; ``v_1 = 1``.
    """
    j = np.arange(1, horizon_steps, dtype=float)
    phi_j = damped_trend_sums(params.phi, horizon_steps - 1)
    c = params.alpha * (1.0 + params.beta * phi_j)
    if season_steps:
        c = c + params.gamma * (j % season_steps == 0)
    return 1.0 + np.concatenate(([0.0], np.cumsum(c**2)))
