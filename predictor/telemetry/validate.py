"""Validation of long telemetry rows before they reach the store.

A row is kept when all of these are true:

- its timestamp is set, not before 2000-01-01 and not more than one day in the future
  (clock skew between collectors is tolerated up to that);
- its component and metric are valid names
  (:func:`predictor.telemetry.schema.is_valid_name`);
- its component is declared, when the settings declare components;
- its metric is listed, when its component lists metrics;
- its value is finite.

Every other row is returned with the first reason that applies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pandas as pd

from predictor.config import Settings
from predictor.telemetry.readers import EARLIEST_PLAUSIBLE, MAX_FUTURE, RAW_VALUE, REASON
from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP, VALUE, is_valid_name

logger = logging.getLogger(__name__)

REASON_MISSING_TIMESTAMP = "missing timestamp"
REASON_IMPLAUSIBLE_TIME = "timestamp before 2000-01-01 or more than one day in the future"
REASON_INVALID_COMPONENT = "invalid component name"
REASON_INVALID_METRIC = "invalid metric name"
REASON_UNKNOWN_COMPONENT = "unknown component (not declared in [[components]])"
REASON_UNKNOWN_METRIC = "metric not listed for the component"
REASON_NON_FINITE = "missing or non-finite value"


def validate(rows: pd.DataFrame, settings: Settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split long rows into valid rows and rejected rows with a reason.

    Parameters
    ----------
    rows : pandas.DataFrame
        Long rows with at least ``timestamp``, ``component``, ``metric`` and ``value``;
        other columns (such as ``source_row``) are carried along.
    settings : Settings
        The declared components and their metrics. With no components declared, any
        valid name is accepted.

    Returns
    -------
    good : pandas.DataFrame
        The valid rows, in input order.
    quarantined : pandas.DataFrame
        The other rows, in input order, with ``reason`` (the first check that failed)
        and ``raw_value`` (the offending field as text).
    """
    n_rows = len(rows)
    reasons = np.full(n_rows, None, dtype=object)
    raw_values = np.full(n_rows, None, dtype=object)
    components = rows[COMPONENT].astype(object)
    metrics = rows[METRIC].astype(object)
    values = rows[VALUE].to_numpy(dtype="float64", na_value=np.nan)

    # Checks run from the most basic to the most specific; the first failure is kept.
    latest = pd.Timestamp.now(tz="UTC") + MAX_FUTURE
    times = rows[TIMESTAMP]
    implausible = times.notna() & ((times < EARLIEST_PLAUSIBLE) | (times > latest))
    checks = [
        (times.isna().to_numpy(), REASON_MISSING_TIMESTAMP, times),
        (implausible.to_numpy(), REASON_IMPLAUSIBLE_TIME, times),
        (~_map_unique(components, is_valid_name), REASON_INVALID_COMPONENT, components),
        (~_map_unique(metrics, is_valid_name), REASON_INVALID_METRIC, metrics),
        *_declared_checks(components, metrics, settings),
        (~np.isfinite(values), REASON_NON_FINITE, rows[VALUE]),
    ]
    for failed, reason, field in checks:
        new = failed & pd.isna(reasons)
        if new.any():
            reasons[new] = reason
            raw_values[new] = field[new].map(str).to_numpy(dtype=object)

    bad = ~pd.isna(reasons)
    good = rows.loc[~bad].reset_index(drop=True)
    quarantined = rows.loc[bad].reset_index(drop=True)
    quarantined[REASON] = reasons[bad]
    quarantined[RAW_VALUE] = raw_values[bad]
    if bad.any():
        logger.debug("validation rejected %d of %d rows", int(bad.sum()), n_rows)
    return good, quarantined


def _map_unique(series: pd.Series, check: Callable[[object], bool]) -> np.ndarray:
    """Apply a per-name predicate once per distinct name, then broadcast it to rows."""
    codes, uniques = pd.factorize(series, use_na_sentinel=False)
    outcome = np.array([bool(check(name)) for name in uniques], dtype=bool)
    return outcome[codes] if len(codes) else np.zeros(0, dtype=bool)


def _declared_checks(
    components: pd.Series, metrics: pd.Series, settings: Settings
) -> list[tuple[np.ndarray, str, pd.Series]]:
    if not settings.components:
        return []

    declared = {component.name: component for component in settings.components}
    unknown = ~components.isin(list(declared)).to_numpy()

    # A component without a metrics list accepts every metric name.
    allowed = [
        (name, metric) for name, component in declared.items() for metric in component.metrics
    ]
    restricted = components.isin([n for n, c in declared.items() if c.metrics]).to_numpy()
    pairs = pd.MultiIndex.from_arrays([components, metrics])
    listed = pairs.isin(allowed) if allowed else np.zeros(len(pairs), dtype=bool)
    not_listed = restricted & ~np.asarray(listed)
    return [
        (unknown, REASON_UNKNOWN_COMPONENT, components),
        (not_listed, REASON_UNKNOWN_METRIC, metrics),
    ]
