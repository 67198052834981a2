"""Regular time grids and trailing-window features for one component.

Both steps are strictly causal. A grid value at time ``t`` is the mean of the rows with
timestamp in ``(t - step, t]`` (right-closed bins labelled by their right edge), and a
feature at ``t`` reads grid points at or before ``t`` only. So a score at ``t`` never
changes when rows after ``t`` arrive.

Grid points are whole multiples of the step since the Unix epoch, so grids built from
different batches of rows line up point for point.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP, VALUE

logger = logging.getLogger(__name__)

FEATURE_SEPARATOR = ":"
# Minimum number of points a rolling window needs before it yields a value. Two points give a
# defined median, standard deviation and difference, and the detectors impute the
# remaining NaN cells with the training median.
MIN_WINDOW_POINTS = 2


def _windows(values: np.ndarray, window: int) -> np.ndarray:
    """Return the ``window`` points ending at each position along the last axis.

    Positions before the start are NaN. Shape ``values.shape + (window,)``.
    """
    if values.shape[-1] == 0:
        return np.empty((*values.shape, window))
    padding = np.full((*values.shape[:-1], window - 1), np.nan)
    padded = np.concatenate([padding, values], axis=-1)
    return np.lib.stride_tricks.sliding_window_view(padded, window, axis=-1)


def trailing_median(values: np.ndarray, window: int) -> np.ndarray:
    """Median of the ``window`` points ending at each position along the last axis.

    NaN points are skipped; positions with fewer than :data:`MIN_WINDOW_POINTS` points
    are NaN. Each window is computed on its own, so the result at a position does not
    depend on where the series starts.
    """
    windows = np.sort(_windows(np.asarray(values, dtype="float64"), window), axis=-1)
    counts = (~np.isnan(windows)).sum(axis=-1)
    low = np.take_along_axis(windows, np.clip((counts - 1) // 2, 0, None)[..., None], axis=-1)
    high = np.take_along_axis(windows, (counts // 2)[..., None], axis=-1)
    median = (low[..., 0] + high[..., 0]) / 2.0
    return np.where(counts >= MIN_WINDOW_POINTS, median, np.nan)


def trailing_std(values: np.ndarray, window: int) -> np.ndarray:
    """Sample standard deviation of the ``window`` points ending at each position.

    Same conventions as :func:`trailing_median`. A constant window gives exactly 0.
    """
    windows = _windows(np.asarray(values, dtype="float64"), window)
    counts = (~np.isnan(windows)).sum(axis=-1)
    enough = counts >= MIN_WINDOW_POINTS
    safe = np.where(enough, counts, MIN_WINDOW_POINTS)
    mean = np.nansum(windows, axis=-1) / safe
    squares = np.nansum((windows - mean[..., None]) ** 2, axis=-1)
    return np.where(enough, np.sqrt(squares / (safe - 1)), np.nan)


def feature_metric(column: str) -> str:
    """Return the metric part of a feature column name.

    Parameters
    ----------
    column : str
        A feature column name ``"<metric>:<feature>"``, as made by :func:`make_features`.
        Metric names may themselves contain ``":"``; the feature name is the part after
        the last one.

    Returns
    -------
    str
        The metric name, or ``column`` itself when it has no separator.

    Examples
    --------
    >>> feature_metric("gpu_temp_celsius:resid")
    'gpu_temp_celsius'
    >>> feature_metric("node:exporter:load1:std")
    'node:exporter:load1'
    """
    metric, separator, _ = str(column).rpartition(FEATURE_SEPARATOR)
    return metric if separator else str(column)


def infer_step_seconds(timestamps: pd.Series) -> float:
    """Infer the sampling step as the median spacing of the sorted unique timestamps.

    Parameters
    ----------
    timestamps : pandas.Series
        Timestamps of one component, in any order, duplicates allowed.

    Returns
    -------
    float
        The median spacing in seconds.

    Raises
    ------
    ValueError
        If ``timestamps`` contains fewer than 2 distinct values.

    Examples
    --------
    >>> ts = pd.Series(pd.to_datetime(["2026-01-01 00:02", "2026-01-01 00:00",
    ...                                "2026-01-01 00:01", "2026-01-01 00:01"], utc=True))
    >>> infer_step_seconds(ts)
    60.0
    """
    unique = pd.Series(pd.to_datetime(timestamps, utc=True).dropna().unique()).sort_values()
    if len(unique) < 2:
        raise ValueError(
            f"timestamps: expected at least 2 distinct timestamps to infer the step, "
            f"got {len(unique)}"
        )
    spacing = unique.diff().dropna().dt.total_seconds()
    return float(spacing.median())


def build_grid(
    rows: pd.DataFrame,
    step_seconds: float,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    max_fill_steps: int = 3,
) -> pd.DataFrame:
    """Resample the long telemetry rows of one component onto a regular UTC grid.

    Parameters
    ----------
    rows : pandas.DataFrame
        Long rows with columns ``timestamp`` (timezone-aware), ``metric`` and ``value``,
        and optionally ``component``, which must then hold one component only.
    step_seconds : float
        Grid spacing in seconds, greater than 0.
    start, end : pandas.Timestamp or None, default=None
        Inclusive bounds of the returned grid. When ``None``, the grid starts at the first
        row's grid point and ends at the last row's grid point. Bounds off the grid are
        moved inwards to the nearest grid point.
    max_fill_steps : int, default=3
        Maximum number of consecutive empty grid points filled with the last value.
        Longer gaps stay NaN.

    Returns
    -------
    pandas.DataFrame
        Indexed by the UTC grid times (``DatetimeIndex`` named ``timestamp``), one float
        column per metric in sorted order. The value at grid time ``t`` is the mean of the
        rows with timestamp in ``(t - step, t]``.

    Raises
    ------
    ValueError
        If a required column is missing, the timestamps are naive or not datetimes,
        ``rows`` contains more than one component, ``step_seconds`` is not positive or
        ``max_fill_steps`` is negative.
    TypeError
        If ``max_fill_steps`` is not an int.

    Notes
    -----
    Non-finite values (NaN, +/-inf) are left out of the bin means; a bin that had only
    non-finite values is filled like an empty one. Values from bins before ``start`` may
    fill the first grid points, so a grid does not depend on where a batch starts.

    Examples
    --------
    >>> rows = pd.DataFrame({
    ...     "timestamp": pd.to_datetime(["2026-01-01 00:00:30", "2026-01-01 00:01:00",
    ...                                  "2026-01-01 00:01:10"], utc=True),
    ...     "metric": ["cpu", "cpu", "cpu"],
    ...     "value": [1.0, 3.0, 10.0],
    ... })
    >>> build_grid(rows, 60.0)["cpu"].tolist()
    [2.0, 10.0]
    """
    step_ns = _validate_grid_arguments(rows, step_seconds, max_fill_steps)
    stamps = _utc_timestamps(rows[TIMESTAMP])
    values = pd.to_numeric(rows[VALUE], errors="raise").to_numpy(dtype="float64")
    metrics = rows[METRIC].astype(str).to_numpy()

    finite = np.isfinite(values)
    n_dropped = int((~finite).sum())
    if n_dropped:
        logger.warning("grid: left %d non-finite values out of the bin means", n_dropped)
    labels = _right_labels(stamps.to_numpy(dtype="int64"), step_ns)

    binned = (
        pd.DataFrame({"label": labels[finite], METRIC: metrics[finite], VALUE: values[finite]})
        .groupby(["label", METRIC], sort=True)[VALUE]
        .mean()
        .unstack(METRIC)
    )
    first, last = _grid_bounds(labels, step_ns, start, end)
    if first is None or last is None or last < first:
        return _empty_grid([], sorted(set(metrics)))

    # Fill from the earliest bin so a grid that starts at `start` still gets values
    # carried over from rows just before it.
    fill_from = min(first, int(binned.index.min())) if len(binned) else first
    full_index = np.arange(fill_from, last + step_ns, step_ns, dtype="int64")
    columns = sorted(set(metrics))
    grid = binned.reindex(index=full_index, columns=columns).astype("float64")
    grid = grid.ffill(limit=max_fill_steps) if max_fill_steps > 0 else grid
    grid = grid.loc[first:last]
    grid.index = pd.DatetimeIndex(pd.to_datetime(grid.index, unit="ns", utc=True), name=TIMESTAMP)
    grid.columns = pd.Index(columns, dtype=object, name=None)
    return grid


def make_features(
    grid: pd.DataFrame,
    window_steps: int,
    season_steps: int | None = None,
) -> pd.DataFrame:
    """Compute trailing-window features per metric from a regular grid.

    Parameters
    ----------
    grid : pandas.DataFrame
        A regular grid as returned by :func:`build_grid`: increasing index, one column per
        metric.
    window_steps : int
        Length of the trailing window in grid steps, at least 2.
    season_steps : int or None, default=None
        Season length in grid steps. When set, adds the ``sresid`` feature.

    Returns
    -------
    pandas.DataFrame
        Same index as ``grid``. For each metric, in this order, the columns

        - ``<metric>:value``: the grid value,
        - ``<metric>:diff``: value at ``t`` minus value at ``t - 1``,
        - ``<metric>:resid``: value minus the median of the ``window_steps`` points before
          ``t``, the residual after removing the local level and trend,
        - ``<metric>:std``: standard deviation over the ``window_steps`` points ending at
          ``t``,
        - ``<metric>:sresid`` (only with ``season_steps``): value minus the value one
          season earlier.

    Raises
    ------
    ValueError
        If ``window_steps`` or ``season_steps`` is out of range, or the index of ``grid``
        is not increasing.
    TypeError
        If ``window_steps`` or ``season_steps`` is not an int.

    Notes
    -----
    Every feature at ``t`` reads grid points at or before ``t`` only. Windows yield a
    value once they hold 2 points, so the first rows and rows after gaps contain NaN; the
    detectors impute those cells.

    Examples
    --------
    >>> index = pd.date_range("2026-01-01", periods=4, freq="min", tz="UTC")
    >>> grid = pd.DataFrame({"cpu": [1.0, 2.0, 3.0, 10.0]}, index=index)
    >>> make_features(grid, window_steps=2)["cpu:resid"].tolist()
    [nan, nan, 1.5, 7.5]
    """
    _validate_feature_arguments(grid, window_steps, season_steps)

    columns: dict[str, np.ndarray] = {}
    for metric in grid.columns:
        value = grid[metric].to_numpy(dtype="float64")
        previous = np.concatenate([[np.nan], value[:-1]])
        columns[f"{metric}{FEATURE_SEPARATOR}value"] = value
        columns[f"{metric}{FEATURE_SEPARATOR}diff"] = value - previous
        columns[f"{metric}{FEATURE_SEPARATOR}resid"] = value - trailing_median(
            previous, window_steps
        )
        columns[f"{metric}{FEATURE_SEPARATOR}std"] = trailing_std(value, window_steps)
        if season_steps is not None:
            columns[f"{metric}{FEATURE_SEPARATOR}sresid"] = value - grid[metric].shift(
                season_steps
            ).to_numpy(dtype="float64")
    return pd.DataFrame(columns, index=grid.index)


def _validate_grid_arguments(rows: pd.DataFrame, step_seconds: float, max_fill_steps: int) -> int:
    missing = [name for name in (TIMESTAMP, METRIC, VALUE) if name not in rows.columns]
    if missing:
        raise ValueError(
            f"rows: missing columns {missing}; expected long telemetry rows with columns "
            f"{[TIMESTAMP, METRIC, VALUE]}, got {list(rows.columns)}"
        )
    if COMPONENT in rows.columns:
        components = pd.unique(rows[COMPONENT].dropna())
        if len(components) > 1:
            raise ValueError(
                f"rows: expected the rows of one component, got {len(components)} "
                f"components {sorted(map(str, components))[:5]!r}"
            )
    if not np.isfinite(step_seconds) or step_seconds <= 0:
        raise ValueError(f"step_seconds: expected a number > 0, got {step_seconds!r}")
    step_ns = round(float(step_seconds) * 1e9)
    if step_ns < 1:
        raise ValueError(f"step_seconds: expected at least 1 nanosecond, got {step_seconds!r}")
    if isinstance(max_fill_steps, bool) or not isinstance(max_fill_steps, int | np.integer):
        raise TypeError(f"max_fill_steps: expected an int >= 0, got {max_fill_steps!r}")
    if max_fill_steps < 0:
        raise ValueError(f"max_fill_steps: expected an int >= 0, got {max_fill_steps!r}")
    return step_ns


def _utc_timestamps(column: pd.Series) -> pd.Series:
    # A naive column is invalid input data rather than a programming error, so it raises
    # ValueError like every other input problem here.
    if not isinstance(column.dtype, pd.DatetimeTZDtype):
        raise ValueError(  # noqa: TRY004
            f"rows[{TIMESTAMP!r}]: expected timezone-aware datetimes (UTC), got dtype "
            f"{str(column.dtype)!r}; localise naive times at ingest, never guess the zone"
        )
    if column.isna().any():
        raise ValueError(
            f"rows[{TIMESTAMP!r}]: expected no missing timestamps, got {int(column.isna().sum())}"
        )
    return column.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _right_labels(stamps_ns: np.ndarray, step_ns: int) -> np.ndarray:
    # Ceiling division puts a row at exactly t into the bin labelled t, and a row just
    # after t into the bin labelled t + step: bins are (t - step, t].
    return -((-stamps_ns) // step_ns) * step_ns


def _grid_bounds(
    labels: np.ndarray,
    step_ns: int,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> tuple[int | None, int | None]:
    if start is not None:
        start_ns = np.array([_timestamp_ns(start, "start")])
        first: int | None = int(_right_labels(start_ns, step_ns)[0])
    else:
        first = int(labels.min()) if len(labels) else None
    if end is not None:
        last: int | None = (_timestamp_ns(end, "end") // step_ns) * step_ns
    else:
        last = int(labels.max()) if len(labels) else None
    return first, last


def _timestamp_ns(value: pd.Timestamp, name: str) -> int:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise ValueError(f"{name}: expected a timezone-aware timestamp, got {value!r}")
    return int(stamp.tz_convert("UTC").as_unit("ns").value)


def _empty_grid(index_ns: list[int], columns: list[str]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(index_ns, unit="ns", utc=True), name=TIMESTAMP)
    return pd.DataFrame({name: pd.Series(dtype="float64") for name in columns}, index=index)


def _validate_feature_arguments(
    grid: pd.DataFrame, window_steps: int, season_steps: int | None
) -> None:
    if isinstance(window_steps, bool) or not isinstance(window_steps, int | np.integer):
        raise TypeError(f"window_steps: expected an int >= 2, got {window_steps!r}")
    if window_steps < 2:
        raise ValueError(f"window_steps: expected an int >= 2, got {window_steps!r}")
    if season_steps is not None and (
        isinstance(season_steps, bool) or not isinstance(season_steps, int | np.integer)
    ):
        raise TypeError(f"season_steps: expected None or an int >= 1, got {season_steps!r}")
    if season_steps is not None and season_steps < 1:
        raise ValueError(f"season_steps: expected None or an int >= 1, got {season_steps!r}")
    if not grid.index.is_monotonic_increasing or not grid.index.is_unique:
        raise ValueError(
            f"grid: expected a strictly increasing index, got {len(grid)} rows that are "
            f"out of order or repeated; build the grid with build_grid"
        )
