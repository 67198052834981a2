"""Deduplication of appended rows against each other and against stored rows.

Each row has one key, (component, metric, timestamp), and the store keeps one value per
key. Exact repeats are skipped; a row that would change a kept value is a conflict, and
the first value seen wins: a stored value beats any new one, and within one append the
earliest row beats later ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from predictor.telemetry.readers import REASON
from predictor.telemetry.schema import COMPONENT, LONG_COLUMNS, METRIC, TIMESTAMP, VALUE

KEY_COLUMNS = [COMPONENT, METRIC, TIMESTAMP]
KEPT_VALUE = "kept_value"
REASON_CONFLICT = (
    "conflicting value for the same component, metric and timestamp (first value kept)"
)


@dataclass
class AppendResult:
    """Outcome of :meth:`TelemetryStore.append`.

    Attributes
    ----------
    written : int
        Rows added to the store.
    duplicates : int
        Rows skipped because the same key and value is already stored or came earlier
        in the same input.
    conflicts : pandas.DataFrame
        Rows not stored because their key already has a different value. They keep
        their input columns and gain ``reason`` and ``kept_value`` (the value that
        stays in the store).
    """

    written: int
    duplicates: int
    conflicts: pd.DataFrame = field(default_factory=pd.DataFrame)


def deduplicate(
    rows: pd.DataFrame, frame: pd.DataFrame, stored: pd.DataFrame
) -> tuple[pd.DataFrame, AppendResult]:
    """Return the rows to write and the append's counts and conflicts.

    Parameters
    ----------
    rows : pandas.DataFrame
        The input as given, whose columns the conflicts keep.
    frame : pandas.DataFrame
        ``rows`` normalised by :func:`normalise_input`.
    stored : pandas.DataFrame
        Every stored row that can share a key with ``frame`` (more rows do no harm).
    """
    exact_repeat = frame.duplicated(subset=[*KEY_COLUMNS, VALUE], keep="first")
    candidates = frame.loc[~exact_repeat]
    matched_value = _lookup_stored(candidates, stored)

    in_store = ~np.isnan(matched_value)
    same_value = in_store & (matched_value == candidates[VALUE].to_numpy())
    new = candidates.loc[~in_store]
    repeated_key = new.duplicated(subset=KEY_COLUMNS, keep="first").to_numpy()
    to_write = new.loc[~repeated_key]

    conflicts = _conflicts(rows, candidates, in_store & ~same_value, matched_value,
                           new, repeated_key)
    duplicates = int(exact_repeat.sum()) + int(same_value.sum())
    result = AppendResult(written=len(to_write), duplicates=duplicates, conflicts=conflicts)
    return to_write, result


def normalise_input(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in LONG_COLUMNS if column not in rows.columns]
    if missing:
        raise ValueError(
            f"rows: missing columns {missing}; expected {list(LONG_COLUMNS)}, "
            f"got {list(rows.columns)}"
        )
    if not isinstance(rows[TIMESTAMP].dtype, pd.DatetimeTZDtype):
        raise TypeError(
            f"rows: column 'timestamp' must be timezone-aware, got dtype {rows[TIMESTAMP].dtype!r}"
        )
    frame = rows[list(LONG_COLUMNS)].reset_index(drop=True)
    frame[TIMESTAMP] = frame[TIMESTAMP].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    frame[COMPONENT] = frame[COMPONENT].astype(str)
    frame[METRIC] = frame[METRIC].astype(str)
    frame[VALUE] = frame[VALUE].astype("float64")
    return frame


def _lookup_stored(candidates: pd.DataFrame, stored: pd.DataFrame) -> np.ndarray:
    """Return, per candidate row, the stored value of its key, or NaN if none is stored."""
    if stored.empty:
        return np.full(len(candidates), np.nan)
    stored = stored.astype({COMPONENT: str, METRIC: str}).drop_duplicates(KEY_COLUMNS)
    merged = candidates[KEY_COLUMNS].merge(
        stored.rename(columns={VALUE: KEPT_VALUE}), on=KEY_COLUMNS, how="left",
        validate="many_to_one",
    )
    return merged[KEPT_VALUE].to_numpy(dtype="float64", na_value=np.nan)


def _conflicts(
    rows: pd.DataFrame,
    candidates: pd.DataFrame,
    against_store: np.ndarray,
    stored_value: np.ndarray,
    new: pd.DataFrame,
    repeated_key: np.ndarray,
) -> pd.DataFrame:
    """Collect conflicting rows with their original columns, a reason and the kept value."""
    original = rows.reset_index(drop=True)
    first_in_input = new.groupby(KEY_COLUMNS, sort=False)[VALUE].transform("first")

    positions = np.concatenate([candidates.index[against_store], new.index[repeated_key]])
    kept = np.concatenate([stored_value[against_store], first_in_input.to_numpy()[repeated_key]])
    order = np.argsort(positions, kind="stable")

    conflicts = original.iloc[positions[order]].reset_index(drop=True)
    conflicts[REASON] = REASON_CONFLICT
    conflicts[KEPT_VALUE] = kept[order]
    return conflicts


def empty_conflicts(rows: pd.DataFrame) -> pd.DataFrame:
    conflicts = rows.iloc[0:0].copy()
    conflicts[REASON] = pd.Series([], dtype=object)
    conflicts[KEPT_VALUE] = pd.Series([], dtype="float64")
    return conflicts
