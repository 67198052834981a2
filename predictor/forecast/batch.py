"""Fit and run many degradation forecasters at once.

:func:`fit_forecasters` fits :class:`~predictor.forecast.DegradationForecaster` models to
many series with the vectorised least-squares search of
:mod:`predictor.forecast._batch_search`, which minimises the same sum of squared
one-step errors as statsmodels over the same bounds. It covers the non-seasonal models:
the damped trend, and simple smoothing for histories shorter than ``min_history_steps``
or whose trend fit is implausible. A series that needs a seasonal model, contains a gap
longer than ``MAX_INTERPOLATED_GAP_STEPS``, or has fewer than ``MIN_BATCH_OBSERVATIONS``
observations is fitted on its own with statsmodels, and the number of such series is
logged.

:func:`forecast_paths_batch` runs the fitted recursions forward over a matrix of new
observations and returns what :meth:`DegradationForecaster.forecast_path` returns for
each series.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr
from sklearn.utils.validation import check_is_fitted

from predictor.forecast._batch_kernels import fitted_paths, robust_sigmas
from predictor.forecast._batch_search import _fit_rows, fit_least_squares
from predictor.forecast._recursion import SmoothingParams, SmoothingState, damped_trend_sums
from predictor.forecast.exponential import (
    PATH_COLUMNS,
    DegradationForecaster,
    FitInput,
    _series_name,
    implausible_forecast,
    min_level_smoothing,
    plausible_range,
    prepare_fit_input,
    warn_simple_fallback,
)

logger = logging.getLogger(__name__)

# Below this many observations statsmodels starts from different initial values; such
# short series are fitted one by one.
MIN_BATCH_OBSERVATIONS = 10
# The seasonal state of every non-seasonal model; nothing writes to it.
_NO_SEASON = np.empty(0)


def fit_forecasters(
    series: Sequence[pd.Series],
    *,
    thresholds: Sequence[float],
    directions: Sequence[str],
    horizon_steps: int,
    season_steps: int | None = None,
) -> list[DegradationForecaster]:
    """Fit one degradation forecaster per series, vectorised where the model allows.

    Parameters
    ----------
    series : sequence of pandas.Series
        Training histories, each as :meth:`DegradationForecaster.fit` expects.
    thresholds, directions : sequence
        The threshold and direction of each series' forecaster.
    horizon_steps : int
        Forecast horizon in grid steps, shared by all forecasters.
    season_steps : int or None, default=None
        Season length in grid steps; series long enough for it are fitted one by one.

    Returns
    -------
    list of DegradationForecaster
        Fitted forecasters in the order of ``series``, with the attributes that
        :meth:`DegradationForecaster.fit` sets.

    Raises
    ------
    ValueError
        If the three sequences differ in length, or as :meth:`DegradationForecaster.fit`
        raises for a parameter or series (the message names the series).

    Warns
    -----
    ForecastFallbackWarning
        For each series whose trend fit is implausible and gets simple smoothing.
    """
    if not len(series) == len(thresholds) == len(directions):
        raise ValueError(
            f"series, thresholds, directions: expected equal lengths, got {len(series)}, "
            f"{len(thresholds)} and {len(directions)}"
        )
    started = time.perf_counter()
    forecasters = [
        DegradationForecaster(
            threshold=threshold,
            direction=direction,
            horizon_steps=horizon_steps,
            season_steps=season_steps,
        )
        for threshold, direction in zip(thresholds, directions, strict=True)
    ]
    batches: dict[tuple[str, int], list[tuple[int, FitInput]]] = defaultdict(list)
    one_by_one: dict[str, list[int]] = defaultdict(list)
    inputs = _prepare_inputs(series)
    for position, (forecaster, data) in enumerate(zip(forecasters, inputs, strict=True)):
        forecaster._validate_params()
        route = _batch_route(forecaster, data)
        if route in ("damped_trend", "simple"):
            batches[(route, len(data.filled))].append((position, data))
        else:
            one_by_one[route].append(position)

    refit_simple: dict[int, list[tuple[int, FitInput, str]]] = defaultdict(list)
    for (kind, _), members in sorted(batches.items()):
        if kind == "damped_trend":
            for position, data, reason in _fit_batch(forecasters, members, "damped_trend"):
                refit_simple[len(data.filled)].append((position, data, reason))
    for (kind, _), members in sorted(batches.items()):
        if kind == "simple":
            reasons = [
                f"{data.n_observed} observations, fewer than min_history_steps="
                f"{forecasters[position].min_history_steps}"
                for position, data in members
            ]
            _fit_batch(forecasters, members, "simple", reasons=reasons)
    for triples in refit_simple.values():
        _fit_batch(
            forecasters,
            [(position, data) for position, data, _ in triples],
            "simple",
            reasons=[reason for _, _, reason in triples],
        )

    for positions in one_by_one.values():
        for position in positions:
            forecasters[position].fit(series[position])
    n_single = sum(len(positions) for positions in one_by_one.values())
    logger.info(
        "forecast batch: fitted %d series, %d vectorised and %d one by one with statsmodels "
        "(%s), in %.2f s",
        len(series),
        len(series) - n_single,
        n_single,
        ", ".join(f"{route}: {len(p)}" for route, p in sorted(one_by_one.items())) or "none",
        time.perf_counter() - started,
    )
    return forecasters


def _prepare_inputs(series: Sequence[pd.Series]) -> list[FitInput]:
    """Validate each series and pick its stretch to fit on, as :func:`prepare_fit_input` does.

    Fleet series usually share one index object. The first series with an index is
    validated in full; a later one with the same index object and only finite values
    needs just its values checked, and its stretch is all of it.
    """
    inputs = []
    validated: dict[int, FitInput] = {}
    for y in series:
        # The series in ``series`` keep their indexes alive, so no id is reused here.
        known = validated.get(id(y.index)) if isinstance(y, pd.Series) else None
        values = _finite_values(y) if known is not None else None
        if values is None:
            data = prepare_fit_input(y)
            validated[id(y.index)] = data
            inputs.append(data)
            continue
        inputs.append(
            FitInput(
                name=_series_name(y),
                series_name=y.name,
                values=values,
                index=known.index,
                step=known.step,
                start=0,
                stop=len(values),
                window=values,
                filled=values,
                n_observed=len(values),
            )
        )
    return inputs


def _finite_values(y: pd.Series) -> np.ndarray | None:
    """Return the float values of ``y`` when all are finite, else None."""
    try:
        values = y.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        return None
    return values if np.isfinite(values).all() else None


def _batch_route(forecaster: DegradationForecaster, data: FitInput) -> str:
    """Return the batch model kind for a series, or why it is fitted one by one."""
    if data.n_observed < MIN_BATCH_OBSERVATIONS:
        return "fewer than 10 observations"
    if data.start != int(np.flatnonzero(np.isfinite(data.values))[0]):
        return "long gap"
    if not forecaster.damped_trend:
        return "undamped trend"
    if data.n_observed < forecaster.min_history_steps:
        return "simple"
    kind, season = forecaster._trend_kind(len(data.filled), data.name)
    return "seasonal" if season else kind


def _fit_batch(
    forecasters: list[DegradationForecaster],
    members: list[tuple[int, FitInput]],
    kind: str,
    reasons: list[str] | None = None,
) -> list[tuple[int, FitInput, str]]:
    """Fit ``kind`` to equal-length series and store the fits that are plausible.

    For simple smoothing, ``reasons`` says per series why it replaces the trend model.
    Returns the damped-trend fits that are implausible, with the reason, unstored.
    """
    if not members:
        return []
    horizon = forecasters[members[0][0]].horizon_steps
    values = np.stack([data.filled for _, data in members])
    fit = fit_least_squares(
        values, trend=kind == "damped_trend", min_alpha=min_level_smoothing(horizon)
    )
    predictions, level, trend = fitted_paths(
        values, fit.alpha, fit.beta, fit.phi, fit.initial_level, fit.initial_trend
    )
    sigmas = robust_sigmas(np.stack([data.window for _, data in members]), predictions)
    # Linear bridges stay within the observations around them, so the extremes of the
    # filled values are those of the observed ones.
    low, high = values.min(axis=1), values.max(axis=1)
    if kind == "damped_trend":
        means = level[:, None] + damped_trend_sums(fit.phi[:, None], horizon) * trend[:, None]
        lower, upper = plausible_range(low, high)
        implausible = ~(
            np.isfinite(means).all(axis=1)
            & (np.nanmin(means, axis=1) >= lower)
            & (np.nanmax(means, axis=1) <= upper)
        )

    rejected = []
    for row, (position, data) in enumerate(members):
        params = SmoothingParams(
            alpha=float(fit.alpha[row]), beta=float(fit.beta[row]), phi=float(fit.phi[row])
        )
        if kind == "damped_trend":
            reason = None
            if implausible[row]:
                reason = implausible_forecast(means[row], float(low[row]), float(high[row]))
                rejected.append((position, data, f"the damped_trend fit is implausible: {reason}"))
                continue
        else:
            reason = reasons[row]
            warn_simple_fallback(data.name, reason, stacklevel=4)
        end = _advance_missing(
            float(level[row]), float(trend[row]), params.phi, len(data.values) - data.stop
        )
        forecasters[position]._store_fit(
            data,
            kind,
            params,
            SmoothingState(
                level=float(fit.initial_level[row]),
                trend=float(fit.initial_trend[row]),
                season=_NO_SEASON,
            ),
            reason,
            predictions[row],
            end,
            sigma=float(sigmas[row]),
            window_min=float(low[row]),
        )
    return rejected


def _advance_missing(level: float, trend: float, phi: float, steps: int) -> SmoothingState:
    """Return the state after ``steps`` missing observations, as the recursion advances."""
    for _ in range(steps):
        trend = phi * trend
        level = level + trend
    return SmoothingState(level=level, trend=trend, season=_NO_SEASON)


def forecast_paths_batch(
    forecasters: Sequence[DegradationForecaster], histories: np.ndarray
) -> dict[str, np.ndarray]:
    """Run fitted forecasters over new observations, vectorised over series.

    Parameters
    ----------
    forecasters : sequence of DegradationForecaster
        Fitted forecasters.
    histories : ndarray of shape (n_series, n_steps)
        Row ``i`` holds the observations of series ``i`` at grid steps ``1..n_steps``
        after ``forecasters[i].train_end_``; NaN marks a missing one.

    Returns
    -------
    dict of str to ndarray of shape (n_series, n_steps)
        ``"expected"``, ``"crossing_probability"`` and ``"time_to_threshold_seconds"``,
        equal to the columns that ``forecast_path`` returns for each series on those
        grid times.

    Raises
    ------
    ValueError
        If ``histories`` is not a 2-D array with one row per forecaster, or holds an
        infinite value.
    """
    histories = np.asarray(histories, dtype=float)
    if histories.ndim != 2 or histories.shape[0] != len(forecasters):
        raise ValueError(
            f"histories: expected shape ({len(forecasters)}, n_steps), one row per "
            f"forecaster, got {histories.shape}"
        )
    infinite = np.argwhere(np.isinf(histories))
    if len(infinite):
        row, step = infinite[0]
        raise ValueError(
            "histories: expected finite values or NaN, got "
            f"{float(histories[row, step])!r} in row "
            f"{row} at step {step}"
        )
    for forecaster in forecasters:
        check_is_fitted(forecaster, "level_")
    out = {column: np.empty(histories.shape) for column in PATH_COLUMNS}
    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for row, forecaster in enumerate(forecasters):
        groups[(forecaster.season_steps_, forecaster.horizon_steps)].append(row)
    for (season_steps, _), rows in groups.items():
        group = [forecasters[row] for row in rows]
        paths = _forecast_group(group, histories[rows], season_steps)
        for column in PATH_COLUMNS:
            out[column][rows] = paths[column]
    return out


def _forecast_group(
    forecasters: list[DegradationForecaster], histories: np.ndarray, season_steps: int
) -> dict[str, np.ndarray]:
    """Run forecast_paths_batch for forecasters with one season length and horizon."""
    n_series, n_steps = histories.shape
    horizon = forecasters[0].horizon_steps
    params = [forecaster._params() for forecaster in forecasters]
    alpha, beta, phi, gamma = (
        np.array([getattr(p, name) for p in params]) for name in ("alpha", "beta", "phi", "gamma")
    )
    level = np.array([forecaster.level_ for forecaster in forecasters])
    trend = np.array([forecaster.trend_ for forecaster in forecasters])
    ring = np.array([forecaster.season_ for forecaster in forecasters]).reshape(
        n_series, season_steps
    )
    threshold = np.array([float(forecaster.threshold) for forecaster in forecasters])
    above = np.array([forecaster.direction == "above" for forecaster in forecasters])
    nonnegative = np.array([bool(forecaster.nonnegative_) for forecaster in forecasters])
    sigma = np.array([forecaster.sigma_ for forecaster in forecasters])
    confirm = np.array([forecaster.confirm_steps for forecaster in forecasters])
    step_seconds = np.array([forecaster.step_.total_seconds() for forecaster in forecasters])
    trend_sums = np.stack([damped_trend_sums(p.phi, horizon) for p in params])
    scale = sigma[:, None] * np.sqrt(np.stack([f.variance_factors_ for f in forecasters]))
    certain = sigma == 0.0

    expected = np.empty((n_series, n_steps))
    probability = np.empty((n_series, n_steps))
    seconds = np.empty((n_series, n_steps))
    run = np.zeros(n_series, dtype=int)
    ahead = np.arange(1, horizon + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        for step in range(n_steps):
            y = histories[:, step]
            observed = np.isfinite(y)
            position = step % season_steps if season_steps else 0
            seasonal = ring[:, position] if season_steps else 0.0
            damped = phi * trend
            prediction = level + damped + seasonal
            new_level = np.where(
                observed, alpha * (y - seasonal) + (1.0 - alpha) * (level + damped), level + damped
            )
            new_trend = np.where(
                observed, beta * (new_level - level) + (1.0 - beta) * damped, damped
            )
            if season_steps:
                ring[:, position] = np.where(
                    observed, gamma * (y - level - damped) + (1.0 - gamma) * seasonal, seasonal
                )
                season_ahead = ring[:, (position + ahead) % season_steps]
            else:
                season_ahead = 0.0
            level, trend = new_level, new_trend

            means = level[:, None] + trend_sums * trend[:, None] + season_ahead
            means = np.where(nonnegative[:, None], np.maximum(means, 0.0), means)
            current = np.where(observed, y, prediction)
            current = np.where(nonnegative, np.maximum(current, 0.0), current)

            beyond_means = np.where(above[:, None], means >= threshold[:, None],
                                    means <= threshold[:, None])
            distance = np.where(above[:, None], means - threshold[:, None],
                                threshold[:, None] - means)
            chance = np.where(
                certain, beyond_means.any(axis=1), ndtr(distance / scale).max(axis=1)
            )
            beyond_observed = observed & np.where(above, y >= threshold, y <= threshold)
            run = np.where(beyond_observed, run + 1, 0)
            chance[run >= confirm] = 1.0

            crossed = beyond_means.any(axis=1)
            wait = np.where(crossed, (beyond_means.argmax(axis=1) + 1) * step_seconds, np.nan)
            wait[np.where(above, current >= threshold, current <= threshold)] = 0.0

            expected[:, step] = means[:, -1]
            probability[:, step] = chance
            seconds[:, step] = wait
    return {
        "expected": expected,
        "crossing_probability": probability,
        "time_to_threshold_seconds": seconds,
    }


def warm_up_kernels() -> dict[str, object]:
    """Load or compile the compiled loops of the batch fit, and time it.

    numba compiles each loop on its first call in a process and caches the machine
    code next to the module (or in ``NUMBA_CACHE_DIR``); later processes load it from
    there. Calling this first keeps that one-time cost out of a timed fit.

    Returns
    -------
    dict
        ``compile_s``, the seconds taken, and ``compile_source``: ``"disk cache"`` when
        every loop was loaded from the cache, else ``"compiled"``.
    """
    kernels = (_fit_rows, fitted_paths, robust_sigmas)
    misses_before = sum(sum(kernel.stats.cache_misses.values()) for kernel in kernels)
    started = time.perf_counter()
    values = np.linspace(0.0, 1.0, 2 * MIN_BATCH_OBSERVATIONS).reshape(2, -1) ** 2
    for trend in (True, False):
        fit = fit_least_squares(values, trend=trend, min_alpha=min_level_smoothing(1))
        predictions, _, _ = fitted_paths(
            values, fit.alpha, fit.beta, fit.phi, fit.initial_level, fit.initial_trend
        )
        robust_sigmas(values, predictions)
    compile_s = time.perf_counter() - started
    misses = sum(sum(kernel.stats.cache_misses.values()) for kernel in kernels) - misses_before
    source = "compiled" if misses else "disk cache"
    logger.info("forecast batch: %s the compiled loops in %.2f s", source, compile_s)
    return {"compile_s": compile_s, "compile_source": source}
