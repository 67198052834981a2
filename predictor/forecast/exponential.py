"""Degradation forecaster: exponential smoothing toward a metric threshold.

:class:`DegradationForecaster` fits a statsmodels exponential-smoothing model on one
metric's training history and then runs the fitted recursion forward over new
observations, without refitting. At each new grid time it reports the expected value at
the end of the horizon, the probability that the metric crosses its threshold within the
horizon, and the time until the mean forecast crosses it.
"""

from __future__ import annotations

import logging
import numbers
import warnings
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import ndtr
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from predictor.exceptions import ForecastFallbackWarning
from predictor.forecast._recursion import (
    SmoothingParams,
    SmoothingState,
    damped_trend_sums,
    run_recursion,
    variance_factors,
)

logger = logging.getLogger(__name__)

DIRECTIONS = ("above", "below")
PATH_COLUMNS = ("expected", "crossing_probability", "time_to_threshold_seconds")

# A forecast over the horizon is implausible when it leaves
# [min - k * range, max + k * range] of the training observations, with k below.
PLAUSIBLE_RANGE_FACTOR = 1.0
# Interior gaps up to this many steps are bridged linearly for fitting. A longer bridge
# would invent a trend or flatten a season, so the fit starts after the last longer gap.
MAX_INTERPOLATED_GAP_STEPS = 12
# statsmodels needs a few observations to estimate even a simple model.
MIN_FIT_OBSERVATIONS = 3
# Scale factor from the median absolute deviation to the standard deviation of a normal.
MAD_TO_SIGMA = 1.4826


class DegradationForecaster(BaseEstimator):
    """Forecast one metric with exponential smoothing and the risk of crossing a threshold.

    The model is statsmodels' ``ExponentialSmoothing`` with an additive damped trend, plus
    additive seasonality of ``season_steps`` when the history contains at least two full
    seasons. It is never multiplicative, because multiplicative seasonality breaks on the
    exact zeros that idle request rates contain.

    Parameters
    ----------
    threshold : float
        The metric value whose crossing counts as a degradation.
    direction : {"above", "below"}, default="above"
        ``"above"``: reaching ``threshold`` or more is a crossing. ``"below"``: reaching
        ``threshold`` or less is.
    horizon_steps : int, default=12
        Forecast horizon in grid steps.
    season_steps : int or None, default=None
        Season length in grid steps (for example 24 for a daily season on an hourly grid).
        None fits no seasonality.
    damped_trend : bool, default=True
        Damp the additive trend. False fits an undamped trend.
    min_history_steps : int, default=48
        Minimum number of observations for a trend model. Shorter histories get simple exponential
        smoothing without trend.
    nonnegative : bool or None, default=None
        Clip forecasts at 0. None decides from the training data: clip when it has no
        negative values.
    confirm_steps : int, default=3
        Consecutive observations beyond the threshold after which the crossing
        probability is 1, however far the smoothed forecast lags. Fewer than this (a
        metric hovering at its threshold) leave the probability to the forecast.

    Attributes
    ----------
    model_ : str
        The model used: ``"damped_trend"``, ``"damped_trend_seasonal"``, ``"trend"``,
        ``"trend_seasonal"`` (when ``damped_trend=False``) or ``"simple"``.
    fallback_reason_ : str or None
        Why the simple model replaced the trend model, or None.
    alpha_, beta_, phi_, gamma_ : float
        Fitted level smoothing, trend smoothing (Holt form, as statsmodels'
        ``smoothing_trend``), trend damping and seasonal smoothing. NaN when the model
        has no such component, and ``phi_ = 1`` for an undamped trend.
    initial_level_, initial_trend_ : float
        State before the first training observation, as statsmodels estimated it.
    initial_season_ : ndarray of shape (season_steps_,)
        Seasonal components of the first ``season_steps_`` training observations.
    level_, trend_ : float
        Level and trend at ``train_end_``.
    season_ : ndarray of shape (season_steps_,)
        ``season_[k]`` is the seasonal component ``k + 1`` steps after ``train_end_``.
    season_steps_ : int
        Season length used; 0 without seasonality.
    sigma_ : float
        Residual standard deviation of the one-step predictions, estimated robustly (see
        Notes).
    variance_factors_ : ndarray of shape (horizon_steps,)
        Forecast variance ``h`` steps ahead in units of ``sigma_**2``.
    step_ : pandas.Timedelta
        Grid step of the training series.
    train_start_ : pandas.Timestamp
        First grid time the model was fitted on.
    train_end_ : pandas.Timestamp
        Last grid time of the training series; ``forecast_path`` continues after it.
    nonnegative_ : bool
        Whether forecasts are clipped at 0.
    fittedvalues_ : pandas.Series
        One-step predictions over the fitted stretch, from the recursion that
        ``forecast_path`` runs.
    n_observations_ : int
        Observed (non-missing) training values the model was fitted on.

    Notes
    -----
    Fitting uses the stretch after the last gap longer than
    ``MAX_INTERPOLATED_GAP_STEPS`` (12) steps. Shorter interior gaps are interpolated
    linearly for the statsmodels fit only. Missing values after the last observation
    advance the state by prediction only, as in ``forecast_path``.

    The trend model is replaced by simple exponential smoothing, with a
    :class:`~predictor.exceptions.ForecastFallbackWarning` and a logged warning naming the
    reason, when the history has fewer than ``min_history_steps`` observations, when the
    fit raises, or when its mean forecast over the horizon is non-finite or leaves
    ``[min - k * range, max + k * range]`` of the training values, with
    ``k = PLAUSIBLE_RANGE_FACTOR`` (1.0). statsmodels can report a converged fit whose
    state is absurd on short series.

    The level smoothing ``alpha`` is fitted within ``[1 - 0.5 ** (1 / horizon_steps), 1]``
    (see :func:`min_level_smoothing`). On a stationary history the unconstrained optimum
    is close to 0, and such a level would never follow a sustained shift in replay.

    ``sigma_`` is ``1.4826`` times the median absolute deviation of the residuals (the
    plain standard deviation when that is 0). A single burst in training then does not
    widen every later prediction interval, so it does not raise crossing probabilities.
    On heavy-tailed residuals this estimate is smaller than the standard deviation, so
    the intervals are narrower than the observed spread.

    ``crossing_probability`` is ``max_h P(Y_{t+h} beyond threshold)`` over
    ``h = 1..horizon_steps``, with ``Y_{t+h}`` normal around the mean forecast and with the
    additive-error forecast variance ``sigma_**2 * variance_factors_[h-1]``. The probability
    of crossing at any step is at least this maximum, so the value is a lower bound. It
    treats the steps as if perfectly dependent and ignores that the path can cross and
    come back between steps. When forecasts are clipped at 0, the clipped mean is used
    and the normal distribution is not truncated.

    Examples
    --------
    >>> import numpy as np
    >>> import pandas as pd
    >>> from predictor.forecast import DegradationForecaster
    >>> index = pd.date_range("2024-01-01", periods=120, freq="5min", tz="UTC")
    >>> noise = np.random.default_rng(0).normal(0.0, 0.2, 120)
    >>> y = pd.Series(50.0 + 0.1 * np.arange(120) + noise, index=index)
    >>> model = DegradationForecaster(threshold=62.0, horizon_steps=12).fit(y.iloc[:100])
    >>> model.model_
    'damped_trend'
    >>> path = model.forecast_path(y.iloc[100:])
    >>> list(path.columns)
    ['expected', 'crossing_probability', 'time_to_threshold_seconds']
    >>> bool(path["crossing_probability"].iloc[-1] > 0.5)
    True
    """

    def __init__(
        self,
        threshold: float,
        direction: str = "above",
        horizon_steps: int = 12,
        season_steps: int | None = None,
        damped_trend: bool = True,
        min_history_steps: int = 48,
        nonnegative: bool | None = None,
        confirm_steps: int = 3,
    ) -> None:
        self.threshold = threshold
        self.direction = direction
        self.horizon_steps = horizon_steps
        self.season_steps = season_steps
        self.damped_trend = damped_trend
        self.min_history_steps = min_history_steps
        self.nonnegative = nonnegative
        self.confirm_steps = confirm_steps

    def fit(self, y: pd.Series) -> DegradationForecaster:
        """Fit the smoothing model on a metric's history and store its end state.

        Parameters
        ----------
        y : pandas.Series
            One metric on a regular UTC grid: a timezone-aware ``DatetimeIndex`` with a
            fixed step. NaN marks a missing observation.

        Returns
        -------
        self : DegradationForecaster

        Raises
        ------
        TypeError
            If ``y`` is not a Series with a ``DatetimeIndex``, or ``damped_trend`` or
            ``nonnegative`` is not a bool.
        ValueError
            If a parameter is invalid, the index is naive, unsorted or irregular, a
            value is infinite, or fewer than 3 observations follow the last long gap.

        Warns
        -----
        ForecastFallbackWarning
            When simple exponential smoothing replaces the trend model (see Notes).
        """
        self._validate_params()
        data = prepare_fit_input(y)
        kind, params, initial, reason = self._fit_with_fallback(
            data.filled, data.window, data.n_observed, data.name
        )
        # Fitted stretch first (equal to statsmodels' in-sample recursion), then the
        # missing values after the last observation, which advance by prediction only.
        fitted_path = run_recursion(data.filled, params, initial)
        end_state = run_recursion(
            data.values[data.stop :], params, fitted_path.final_state
        ).final_state
        return self._store_fit(
            data, kind, params, initial, reason, fitted_path.predictions, end_state
        )

    def _store_fit(
        self,
        data: FitInput,
        kind: str,
        params: SmoothingParams,
        initial: SmoothingState,
        reason: str | None,
        predictions: np.ndarray,
        end_state: SmoothingState,
        *,
        sigma: float | None = None,
        window_min: float | None = None,
    ) -> DegradationForecaster:
        """Set every fitted attribute from a fitted model and its in-sample recursion.

        ``predictions`` are the one-step predictions over ``data.filled`` and
        ``end_state`` is the state at the end of the training series. A caller that has
        computed ``_robust_sigma`` of the residuals or the minimum of ``data.window``
        for many series at once passes them as ``sigma`` and ``window_min``.
        """
        window = data.window
        if sigma is None:
            observed = np.isfinite(window)
            sigma = _robust_sigma(
                window[observed] - predictions[observed], scale=np.nanmax(np.abs(window))
            )
        if window_min is None:
            window_min = float(np.nanmin(window))
        self.model_ = kind
        self.fallback_reason_ = reason
        self.alpha_ = params.alpha
        self.beta_ = params.beta if kind != "simple" else np.nan
        self.phi_ = params.phi if kind != "simple" else np.nan
        self.gamma_ = params.gamma if kind.endswith("seasonal") else np.nan
        self.initial_level_ = initial.level
        self.initial_trend_ = initial.trend
        self.initial_season_ = initial.season.copy()
        self.level_ = end_state.level
        self.trend_ = end_state.trend
        self.season_ = end_state.season
        self.season_steps_ = len(end_state.season)
        self.sigma_ = sigma
        self.variance_factors_ = variance_factors(params, self.season_steps_, self.horizon_steps)
        self.step_ = data.step
        self.train_start_ = data.index[data.start]
        self.train_end_ = data.index[-1]
        self.nonnegative_ = (
            bool(window_min >= 0.0) if self.nonnegative is None else self.nonnegative
        )
        fitted_index = data.index
        if (data.start, data.stop) != (0, len(data.index)):
            fitted_index = data.index[data.start : data.stop]
        self.fittedvalues_ = pd.Series(predictions, index=fitted_index, name=data.series_name)
        self.n_observations_ = data.n_observed

        logger.debug(
            "forecast %s: fitted %s on %d observations (alpha=%.3g, beta=%.3g, phi=%.3g, "
            "gamma=%.3g, sigma=%.3g)",
            data.name,
            kind,
            data.n_observed,
            self.alpha_,
            self.beta_,
            self.phi_,
            self.gamma_,
            self.sigma_,
        )
        return self

    def forecast_path(self, y: pd.Series) -> pd.DataFrame:
        """Run the fitted recursion over new observations and forecast at each of them.

        Parameters
        ----------
        y : pandas.Series
            The metric on grid points after ``train_end_``, in time order. NaN marks a
            missing observation. Grid points absent from the index count as missing.

        Returns
        -------
        pandas.DataFrame
            Indexed like ``y``, with the columns

            ``expected``
                Mean forecast ``horizon_steps`` after each time.
            ``crossing_probability``
                Probability of crossing the threshold within the horizon (a lower bound,
                see Notes of the class).
            ``time_to_threshold_seconds``
                Seconds until the mean forecast first crosses the threshold; 0 when the
                current value (the observation, or its prediction when missing) is already
                beyond it; NaN when the mean forecast does not cross within the horizon.

            The row for time t depends only on values at or before t.

        Raises
        ------
        TypeError
            If ``y`` is not a Series with a ``DatetimeIndex``.
        ValueError
            If the index is naive, unsorted, not after ``train_end_`` or off the training
            grid, or a value is infinite.
        """
        check_is_fitted(self, "level_")
        values, index = _validate_series(y, "y", regular=False)
        if len(index) == 0:
            return pd.DataFrame(
                {column: pd.Series(dtype=float) for column in PATH_COLUMNS}, index=index
            )
        positions = self._grid_positions(index, _series_name(y))

        grid_values = np.full(positions[-1] + 1, np.nan)
        grid_values[positions] = values
        path = run_recursion(grid_values, self._params(), self._end_state(), self.horizon_steps)

        trend_sums = damped_trend_sums(self._params().phi, self.horizon_steps)
        means = (
            path.levels[:, None] + trend_sums[None, :] * path.trends[:, None] + path.season_ahead
        )
        if self.nonnegative_:
            means = np.maximum(means, 0.0)
        current = np.where(np.isfinite(grid_values), grid_values, path.predictions)
        if self.nonnegative_:
            current = np.maximum(current, 0.0)

        # A metric observed beyond its threshold for confirm_steps consecutive steps has
        # crossed even when the smoothed level has not, because the level lags a fast climb.
        probability = self._crossing_probability(means)
        probability[self._sustained_beyond(grid_values)] = 1.0

        frame = pd.DataFrame(
            {
                "expected": means[:, -1],
                "crossing_probability": probability,
                "time_to_threshold_seconds": self._time_to_threshold(current, means),
            }
        )
        frame = frame.iloc[positions]
        frame.index = index
        return frame

    def _validate_params(self) -> None:
        if not _is_real(self.threshold) or not np.isfinite(self.threshold):
            raise ValueError(f"threshold: expected a finite number, got {self.threshold!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"direction: expected one of {list(DIRECTIONS)}, got {self.direction!r}"
            )
        if not _is_int(self.horizon_steps) or self.horizon_steps < 1:
            raise ValueError(
                f"horizon_steps: expected an integer >= 1, got {self.horizon_steps!r}"
            )
        if self.season_steps is not None and (
            not _is_int(self.season_steps) or self.season_steps < 2
        ):
            raise ValueError(
                f"season_steps: expected None or an integer >= 2, got {self.season_steps!r}"
            )
        if not isinstance(self.damped_trend, bool | np.bool_):
            raise TypeError(f"damped_trend: expected True or False, got {self.damped_trend!r}")
        if not _is_int(self.confirm_steps) or self.confirm_steps < 1:
            raise ValueError(
                f"confirm_steps: expected an integer >= 1, got {self.confirm_steps!r}"
            )
        if not _is_int(self.min_history_steps) or self.min_history_steps < 1:
            raise ValueError(
                f"min_history_steps: expected an integer >= 1, got {self.min_history_steps!r}"
            )
        if self.nonnegative is not None and not isinstance(self.nonnegative, bool | np.bool_):
            raise TypeError(f"nonnegative: expected None, True or False, got {self.nonnegative!r}")

    def _trend_kind(self, n_points: int, name: str) -> tuple[str, int]:
        """Return the trend model kind and season length that the history supports."""
        trend_kind = "damped_trend" if self.damped_trend else "trend"
        m = self.season_steps
        if m is None:
            return trend_kind, 0
        # statsmodels' heuristic initialisation needs two full seasons and at least
        # 10 + 2 * (m // 2) points.
        needed = max(2 * m, 10 + 2 * (m // 2))
        if n_points < needed:
            logger.info(
                "forecast %s: %d points, fewer than the %d needed for seasonality of %d "
                "steps; fitting without seasonality",
                name,
                n_points,
                needed,
                m,
            )
            return trend_kind, 0
        return f"{trend_kind}_seasonal", m

    def _fit_with_fallback(
        self, filled: np.ndarray, window: np.ndarray, n_observed: int, name: str
    ) -> tuple[str, SmoothingParams, SmoothingState, str | None]:
        """Fit the trend model, or the simple model when the trend model is unusable.

        Returns the model kind, its parameters and initial state, and the fallback reason.
        """
        reason = None
        if n_observed < self.min_history_steps:
            reason = (
                f"{n_observed} observations, fewer than min_history_steps={self.min_history_steps}"
            )
        else:
            kind, m = self._trend_kind(len(filled), name)
            try:
                params, initial = _fit_statsmodels(filled, kind, m, self.horizon_steps, name)
            except (ValueError, np.linalg.LinAlgError) as error:
                reason = f"the {kind} fit failed: {error}"
            else:
                reason = self._implausible(filled, window, params, initial)
                if reason is None:
                    return kind, params, initial, None
                reason = f"the {kind} fit is implausible: {reason}"

        warn_simple_fallback(name, reason, stacklevel=4)
        params, initial = _fit_statsmodels(filled, "simple", 0, self.horizon_steps, name)
        return "simple", params, initial, reason

    def _implausible(
        self,
        filled: np.ndarray,
        window: np.ndarray,
        params: SmoothingParams,
        initial: SmoothingState,
    ) -> str | None:
        """Return why the fitted model's forecast is implausible, or None when it is not."""
        numbers_used = [
            params.alpha,
            params.beta,
            params.phi,
            params.gamma,
            initial.level,
            initial.trend,
            *initial.season,
        ]
        if not np.all(np.isfinite(numbers_used)):
            return f"non-finite parameters or initial state {numbers_used!r}"

        state = run_recursion(filled, params, initial).final_state
        m = len(state.season)
        seasonal = state.season[np.arange(self.horizon_steps) % m] if m else 0.0
        means = (
            state.level
            + damped_trend_sums(params.phi, self.horizon_steps) * state.trend
            + seasonal
        )
        return implausible_forecast(means, float(np.nanmin(window)), float(np.nanmax(window)))

    def _params(self) -> SmoothingParams:
        if self.model_ == "simple":
            return SmoothingParams(alpha=self.alpha_)
        gamma = 0.0 if np.isnan(self.gamma_) else self.gamma_
        return SmoothingParams(alpha=self.alpha_, beta=self.beta_, phi=self.phi_, gamma=gamma)

    def _end_state(self) -> SmoothingState:
        return SmoothingState(level=self.level_, trend=self.trend_, season=self.season_)

    def _grid_positions(self, index: pd.DatetimeIndex, name: str) -> np.ndarray:
        """Return each time's 0-based step number after ``train_end_``."""
        offsets_ns = _nanoseconds(index - self.train_end_)
        step_ns = int(_nanoseconds(pd.TimedeltaIndex([self.step_]))[0])
        if offsets_ns[0] <= 0:
            raise ValueError(
                f"y ({name}): expected times after the end of training {self.train_end_}, "
                f"got {index[0]}"
            )
        off_grid = np.flatnonzero(offsets_ns % step_ns != 0)
        if len(off_grid):
            raise ValueError(
                f"y ({name}): expected times on the training grid of step {self.step_} after "
                f"{self.train_end_}, got {index[off_grid[0]]}"
            )
        return offsets_ns // step_ns - 1

    def _beyond(self, values: np.ndarray) -> np.ndarray:
        if self.direction == "above":
            return values >= self.threshold
        return values <= self.threshold

    def _crossing_probability(self, means: np.ndarray) -> np.ndarray:
        if self.sigma_ == 0.0:
            return self._beyond(means).any(axis=1).astype(float)
        scale = self.sigma_ * np.sqrt(self.variance_factors_)
        distance = means - self.threshold if self.direction == "above" else self.threshold - means
        return ndtr(distance / scale[None, :]).max(axis=1)

    def _sustained_beyond(self, observed: np.ndarray) -> np.ndarray:
        """Flag steps whose last ``confirm_steps`` observations are all beyond the threshold."""
        beyond = pd.Series(self._beyond(observed) & np.isfinite(observed), dtype="float64")
        run = beyond.rolling(self.confirm_steps, min_periods=self.confirm_steps).sum()
        return (run >= self.confirm_steps).to_numpy()

    def _time_to_threshold(self, current: np.ndarray, means: np.ndarray) -> np.ndarray:
        crossed = self._beyond(means)
        first_step = crossed.argmax(axis=1) + 1
        seconds = np.where(crossed.any(axis=1), first_step * self.step_.total_seconds(), np.nan)
        seconds[self._beyond(current)] = 0.0
        return seconds


def warn_simple_fallback(name: str, reason: str, stacklevel: int) -> None:
    """Log and warn that simple exponential smoothing replaces the trend model."""
    logger.warning(
        "forecast %s: using simple exponential smoothing without trend because %s",
        name,
        reason,
    )
    warnings.warn(
        f"forecast {name}: using simple exponential smoothing without trend because {reason}",
        ForecastFallbackWarning,
        stacklevel=stacklevel,
    )


def implausible_forecast(means: np.ndarray, low: float, high: float) -> str | None:
    """Return why mean forecasts over the horizon are implausible, or None.

    They are implausible when one is not finite or one leaves
    ``[low - k * span, high + k * span]``, where ``low`` and ``high`` are the extremes of
    the training values, ``span = high - low`` and ``k = PLAUSIBLE_RANGE_FACTOR``.
    """
    if not np.all(np.isfinite(means)):
        return "the forecast over the horizon is not finite"
    lower, upper = plausible_range(low, high)
    if means.min() < lower or means.max() > upper:
        return (
            f"the forecast over the horizon spans [{means.min():.6g}, {means.max():.6g}], "
            f"outside the plausible range [{lower:.6g}, {upper:.6g}]"
        )
    return None


def plausible_range(low, high):
    """Return the bounds ``low - k * span`` and ``high + k * span`` of plausible forecasts.

    ``low`` and ``high`` are the extremes of the training values, as floats or as
    arrays with one entry per series; ``span = high - low``, at least 1e-9 times their
    magnitude, and ``k = PLAUSIBLE_RANGE_FACTOR``.
    """
    magnitude = np.maximum(1.0, np.maximum(np.abs(low), np.abs(high)))
    span = np.maximum(np.subtract(high, low), 1e-9 * magnitude)
    return low - PLAUSIBLE_RANGE_FACTOR * span, high + PLAUSIBLE_RANGE_FACTOR * span


def min_level_smoothing(horizon_steps: int) -> float:
    """Return the smallest level smoothing ``alpha`` allowed for a horizon.

    On a stationary training series the optimal ``alpha`` is close to 0, and such a
    level ignores every later observation, so a sustained shift in replay would never
    reach the forecast. With ``alpha >= 1 - 0.5 ** (1 / horizon_steps)`` a shift that
    lasts one horizon moves the level at least half way to it.
    """
    return 1.0 - 0.5 ** (1.0 / horizon_steps)


def _fit_statsmodels(
    values: np.ndarray, kind: str, season_steps: int, horizon_steps: int, name: str
) -> tuple[SmoothingParams, SmoothingState]:
    """Fit statsmodels ``ExponentialSmoothing`` of ``kind`` and return its parameters."""
    has_trend = kind != "simple"
    seasonal = kind.endswith("seasonal")
    model = ExponentialSmoothing(
        values,
        trend="add" if has_trend else None,
        damped_trend=kind.startswith("damped"),
        seasonal="add" if seasonal else None,
        seasonal_periods=season_steps if seasonal else None,
        # The heuristic start values avoid optimising one initial state per season step,
        # which is slow and often fails to converge for long seasons.
        initialization_method="heuristic" if seasonal else "estimated",
        bounds={"smoothing_level": (min_level_smoothing(horizon_steps), 1.0)},
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model.fit()
    for message in sorted({str(warning.message) for warning in caught}):
        logger.warning(
            "forecast %s: statsmodels warned while fitting %s, using its parameters anyway: %s",
            name,
            kind,
            message,
        )

    fitted = result.params
    if not has_trend:
        phi = 0.0
    elif kind.startswith("damped"):
        phi = float(fitted["damping_trend"])
    else:
        phi = 1.0
    params = SmoothingParams(
        alpha=float(fitted["smoothing_level"]),
        beta=float(fitted["smoothing_trend"]) if has_trend else 0.0,
        phi=phi,
        gamma=float(fitted["smoothing_seasonal"]) if seasonal else 0.0,
    )
    initial = SmoothingState(
        level=float(fitted["initial_level"]),
        trend=float(fitted["initial_trend"]) if has_trend else 0.0,
        season=np.asarray(fitted["initial_seasons"], dtype=float) if seasonal else np.empty(0),
    )
    return params, initial


@dataclass(frozen=True)
class FitInput:
    """A validated training series and the stretch of it that a model is fitted on.

    Attributes
    ----------
    name : str
        The series name for messages.
    series_name : Hashable
        ``y.name``, kept for the fitted values.
    values : ndarray of shape (n,)
        All values; NaN marks a missing one.
    index : pandas.DatetimeIndex
        The UTC grid of ``values``.
    step : pandas.Timedelta
        The grid step.
    start, stop : int
        Positions ``[start, stop)`` of the fitted stretch (see :func:`prepare_fit_input`).
    window : ndarray of shape (stop - start,)
        ``values[start:stop]``, NaN where missing.
    filled : ndarray of shape (stop - start,)
        ``window`` with its gaps bridged linearly.
    n_observed : int
        Observed values in ``window``.
    """

    name: str
    series_name: Hashable
    values: np.ndarray
    index: pd.DatetimeIndex
    step: pd.Timedelta
    start: int
    stop: int
    window: np.ndarray
    filled: np.ndarray
    n_observed: int


def prepare_fit_input(y: object) -> FitInput:
    """Validate a training series and pick the stretch to fit on.

    The stretch ends at the last observation and starts after the last gap longer than
    ``MAX_INTERPOLATED_GAP_STEPS``; shorter gaps in it are bridged linearly.

    Raises
    ------
    TypeError, ValueError
        As :meth:`DegradationForecaster.fit` documents.
    """
    values, index = _validate_series(y, "y")
    name = _series_name(y)
    if len(index) < 2:
        raise ValueError(
            f"y ({name}): expected at least 2 grid points to know the step, got {len(index)}"
        )
    start, stop = _fit_window(values, index, name)
    window = values[start:stop]
    return FitInput(
        name=name,
        series_name=y.name,
        values=values,
        index=index,
        step=pd.Timedelta(index[1] - index[0]),
        start=start,
        stop=stop,
        window=window,
        filled=_interpolate(window),
        n_observed=int(np.isfinite(window).sum()),
    )


def _validate_series(
    y: object, where: str, regular: bool = True
) -> tuple[np.ndarray, pd.DatetimeIndex]:
    """Return the float values and UTC index of a metric series, or raise.

    With ``regular`` the index must have one fixed step.
    """
    if not isinstance(y, pd.Series):
        raise TypeError(f"{where}: expected a pandas Series, got {type(y).__name__}")
    name = _series_name(y)
    if not isinstance(y.index, pd.DatetimeIndex):
        raise TypeError(
            f"{where} ({name}): expected a DatetimeIndex, got {type(y.index).__name__}"
        )
    if y.index.tz is None:
        raise ValueError(
            f"{where} ({name}): expected a timezone-aware UTC DatetimeIndex, got a naive one; "
            "localise it with tz_localize('UTC') if its times are UTC"
        )
    index = y.index.tz_convert("UTC")
    if not index.is_monotonic_increasing or not index.is_unique:
        raise ValueError(
            f"{where} ({name}): expected strictly increasing times, got unsorted or repeated ones"
        )
    try:
        values = y.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{where} ({name}): expected numeric values, got dtype {y.dtype}: {error}"
        ) from None
    infinite = np.flatnonzero(np.isinf(values))
    if len(infinite):
        raise ValueError(
            f"{where} ({name}): expected finite values or NaN, got {values[infinite[0]]!r} at "
            f"{index[infinite[0]]}"
        )
    if regular and len(index) > 2:
        steps = np.diff(index.to_numpy(dtype="datetime64[ns]").astype(np.int64))
        if np.any(steps != steps[0]):
            found = [str(pd.Timedelta(int(step))) for step in np.unique(steps)[:3]]
            raise ValueError(
                f"{where} ({name}): expected a regular grid with one fixed step, got steps "
                f"{found}; resample to the grid first and leave NaN for missing points"
            )
    return values, index


def _fit_window(values: np.ndarray, index: pd.DatetimeIndex, name: str) -> tuple[int, int]:
    """Return the positions ``[start, stop)`` of the stretch to fit on.

    The stretch ends at the last observation and starts at the first observation after
    the last gap longer than ``MAX_INTERPOLATED_GAP_STEPS``.
    """
    observed_positions = np.flatnonzero(np.isfinite(values))
    if len(observed_positions) < MIN_FIT_OBSERVATIONS:
        raise ValueError(
            f"y ({name}): expected at least {MIN_FIT_OBSERVATIONS} observed values, got "
            f"{len(observed_positions)}"
        )
    gaps = np.diff(observed_positions) - 1
    long_gaps = np.flatnonzero(gaps > MAX_INTERPOLATED_GAP_STEPS)
    start = int(observed_positions[0])
    if len(long_gaps):
        last = long_gaps[-1]
        start = int(observed_positions[last + 1])
        logger.info(
            "forecast %s: fitting on the data after a gap of %d steps that ends at %s",
            name,
            int(gaps[last]),
            index[start],
        )
    stop = int(observed_positions[-1]) + 1
    if np.isfinite(values[start:stop]).sum() < MIN_FIT_OBSERVATIONS:
        raise ValueError(
            f"y ({name}): expected at least {MIN_FIT_OBSERVATIONS} observed values after the "
            f"last gap longer than {MAX_INTERPOLATED_GAP_STEPS} steps, which ends at "
            f"{index[start]}"
        )
    return start, stop


def _interpolate(window: np.ndarray) -> np.ndarray:
    """Bridge missing values linearly between the observations around them.

    The window starts and ends with an observation, so every gap has two ends.
    """
    observed = np.isfinite(window)
    if observed.all():
        return window.copy()
    positions = np.arange(len(window))
    return np.interp(positions, positions[observed], window[observed])


def _robust_sigma(residuals: np.ndarray, scale: float) -> float:
    """Return a burst-resistant estimate of the residual standard deviation.

    Values below ``1e-9 * max(1, scale)`` are rounding noise of a constant series and
    return 0.
    """
    if len(residuals) < 2:
        return 0.0
    deviation = np.abs(residuals - np.median(residuals))
    sigma = MAD_TO_SIGMA * float(np.median(deviation))
    if sigma == 0.0:
        # Quantised metrics can have more than half their residuals equal.
        sigma = float(np.std(residuals))
    if sigma <= 1e-9 * max(1.0, float(scale)):
        return 0.0
    return sigma


def _nanoseconds(deltas: pd.TimedeltaIndex) -> np.ndarray:
    # pandas 3 may store times in microseconds, so convert before integer arithmetic.
    return deltas.to_numpy(dtype="timedelta64[ns]").astype(np.int64)


def _series_name(y: pd.Series) -> str:
    return str(y.name) if y.name is not None else "unnamed series"


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)
