"""Read a backtest data set in the long telemetry layout and split it per component.

A data set folder contains two files:

``telemetry.csv`` or ``telemetry.parquet``
    Long rows ``timestamp,component,metric,value``, read by the same reader and
    validation as ``predictor ingest --format long``. Timestamps carry a UTC offset
    (``2024-01-01T00:00:00Z``) or are datetime values with a zone in Parquet. Rows may
    come in any order because the grid bins them by time.
``labels.csv``
    One labeled failure per line with the columns ``component,start,end``: ISO 8601
    times with a UTC offset, both ends inclusive. A failure instant has
    ``start == end``. Other columns (a description, say) are ignored.

Each component's rows are resampled onto a regular grid (:func:`~predictor.features.build_grid`).
The first part of the grid trains the detectors and the rest is scored, and a grid point
is labeled anomalous when its bin ``(t - step, t]`` overlaps a failure window.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from predictor.config import Settings, SourceConfig
from predictor.exceptions import ConfigError, InputError
from predictor.features import build_grid, infer_step_seconds
from predictor.telemetry import read_source, validate
from predictor.telemetry.readers import (
    RAW_VALUE,
    REASON,
    REASON_BAD_TIMESTAMP,
    REASON_IMPLAUSIBLE_EPOCH,
    REASON_NON_FINITE,
    REASON_NON_NUMERIC,
    REASON_NONEXISTENT_LOCAL,
    SOURCE_ROW,
)
from predictor.telemetry.schema import COMPONENT, METRIC, NAME_PATTERN, TIMESTAMP, VALUE
from predictor.telemetry.validate import (
    REASON_INVALID_COMPONENT,
    REASON_INVALID_METRIC,
    REASON_MISSING_TIMESTAMP,
)
from predictor.training import MIN_TRAIN_POINTS

logger = logging.getLogger(__name__)

TELEMETRY_FILES = ("telemetry.csv", "telemetry.parquet")
LABELS_FILE = "labels.csv"
START = "start"
END = "end"
LABEL_COLUMNS = (COMPONENT, START, END)
DEFAULT_TRAIN_FRACTION = 0.5

# The column named in the error for each reason the reader or the validation gives.
REASON_COLUMNS = {
    REASON_BAD_TIMESTAMP: TIMESTAMP,
    REASON_IMPLAUSIBLE_EPOCH: TIMESTAMP,
    REASON_NONEXISTENT_LOCAL: TIMESTAMP,
    REASON_MISSING_TIMESTAMP: TIMESTAMP,
    REASON_INVALID_COMPONENT: COMPONENT,
    REASON_INVALID_METRIC: METRIC,
    REASON_NON_NUMERIC: VALUE,
    REASON_NON_FINITE: VALUE,
}


@dataclass(frozen=True)
class TrainSplit:
    """Boundary between the training and the scored part of every component's timeline.

    Attributes
    ----------
    fraction : float
        Share of each component's grid points, from its start, that trains the
        detectors. Used when ``until`` is None.
    until : Timestamp or None
        When set, grid points strictly before this UTC time train and the rest is scored.
    """

    fraction: float = DEFAULT_TRAIN_FRACTION
    until: pd.Timestamp | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise ConfigError(
                f"train fraction: expected a number between 0 and 1, got {self.fraction!r}"
            )
        if self.until is not None and pd.Timestamp(self.until).tzinfo is None:
            raise ConfigError(
                f"train until: expected a time with a UTC offset, got {str(self.until)!r}"
            )

    def describe(self) -> dict[str, str | float | None]:
        """Return the split as JSON-ready values for the summary."""
        until = self.until.isoformat() if self.until is not None else None
        return {"train_fraction": None if until else self.fraction, "train_until": until}


@dataclass(frozen=True)
class FailureWindow:
    """One labeled failure: a component and an inclusive UTC window.

    Attributes
    ----------
    component : str
    start, end : Timestamp
        Both ends inclusive, UTC.
    line : int
        The 1-based line in the labels file, counting the header as line 1.
    """

    component: str
    start: pd.Timestamp
    end: pd.Timestamp
    line: int


@dataclass
class ComponentData:
    """The training and scored grid of one component, with a label per scored point.

    Attributes
    ----------
    component : str
    step_seconds : float
        Grid spacing.
    train, test : pandas.DataFrame
        Consecutive parts of the grid (index: UTC grid times, one column per metric).
    labels : numpy.ndarray
        0 or 1 per row of ``test``, 1 where a failure window overlaps the grid point's bin.
    failures_in_train, failures_in_test : int
        Failure windows that overlap only the training part, and those that overlap the
        scored part.
    """

    component: str
    step_seconds: float
    train: pd.DataFrame
    test: pd.DataFrame
    labels: np.ndarray
    failures_in_train: int
    failures_in_test: int


def locate_files(data_dir: Path) -> tuple[Path, Path]:
    """Return the telemetry file and the labels file of a long-layout data set folder.

    Raises
    ------
    InputError
        If neither or both telemetry files exist, or the labels file is missing.
    """
    found = [data_dir / name for name in TELEMETRY_FILES if (data_dir / name).is_file()]
    if not found:
        raise InputError(
            f"no telemetry file; expected {' or '.join(TELEMETRY_FILES)} with the columns "
            "timestamp,component,metric,value",
            path=str(data_dir),
        )
    if len(found) > 1:
        raise InputError(
            f"both {found[0].name} and {found[1].name} exist; keep one of them",
            path=str(data_dir),
        )
    labels = data_dir / LABELS_FILE
    if not labels.is_file():
        raise InputError(
            f"labels file not found; expected {LABELS_FILE} with the columns "
            f"{','.join(LABEL_COLUMNS)} next to {found[0].name}",
            path=str(labels),
        )
    return found[0], labels


def read_telemetry(path: Path, settings: Settings) -> pd.DataFrame:
    """Read and validate long telemetry rows, raising on every row that cannot be used.

    The reader and the validation are those of ``predictor ingest --format long``, but
    the components declared in ``settings`` are not required: a backtest data set is not
    the configured fleet. Ingest quarantines bad rows, whereas a backtest on partial data
    would measure something else, so here the first bad row raises.

    Returns
    -------
    pandas.DataFrame
        Columns ``timestamp``, ``component``, ``metric``, ``value`` and ``source_row``.

    Raises
    ------
    InputError
        If the file cannot be read, has no rows, has a row the ingest would quarantine,
        or gives two values for the same component, metric and timestamp.
    """
    raw = read_source(SourceConfig(name=path.name, format="long", path=path))
    good, invalid = validate(raw.rows, replace(settings, components=()))
    rejected = [part for part in (raw.rejected, invalid) if not part.empty]
    if rejected:
        _raise_first_rejected(pd.concat(rejected, ignore_index=True), path)
    if good.empty:
        raise InputError(
            "no telemetry rows; expected the columns timestamp,component,metric,value",
            path=str(path),
        )
    _check_conflicts(good, path)
    logger.info(
        "backtest long: read %d rows of %d components from %s",
        len(good),
        good[COMPONENT].nunique(),
        path,
    )
    return good


def _raise_first_rejected(rejected: pd.DataFrame, path: Path) -> None:
    first = rejected.sort_values(SOURCE_ROW, kind="stable").iloc[0]
    reason = str(first[REASON])
    hint = ""
    if reason == REASON_INVALID_COMPONENT:
        hint = (
            f"; component names must match {NAME_PATTERN.pattern} because they become "
            "result file names"
        )
    elif reason == REASON_INVALID_METRIC:
        hint = f"; metric names must match {NAME_PATTERN.pattern}"
    raise InputError(
        f"{reason}: {first[RAW_VALUE]!r}{hint}; {len(rejected)} rows cannot be used, "
        "fix or remove them",
        path=str(path),
        row=int(first[SOURCE_ROW]),
        column=REASON_COLUMNS.get(reason),
    )


def _check_conflicts(rows: pd.DataFrame, path: Path) -> None:
    """Raise when the same component, metric and timestamp has two different values."""
    keys = [COMPONENT, METRIC, TIMESTAMP]
    repeated = rows.loc[rows.duplicated(keys, keep=False)]
    if repeated.empty:
        return
    distinct = repeated.groupby(keys, sort=False)[VALUE].transform("nunique")
    conflicting = repeated.loc[distinct.to_numpy() > 1].sort_values(SOURCE_ROW, kind="stable")
    if conflicting.empty:
        # Exact repeats average to the same grid value, so they change nothing.
        return
    first = conflicting.iloc[0]
    same_key = conflicting.loc[
        (conflicting[COMPONENT] == first[COMPONENT])
        & (conflicting[METRIC] == first[METRIC])
        & (conflicting[TIMESTAMP] == first[TIMESTAMP])
        & (conflicting[VALUE] != first[VALUE])
    ].iloc[0]
    raise InputError(
        f"component {first[COMPONENT]!r}, metric {first[METRIC]!r} at "
        f"{first[TIMESTAMP].isoformat()} has the value {float(same_key[VALUE])!r} here and "
        f"{float(first[VALUE])!r} in row {int(first[SOURCE_ROW])}; keep one value per component, "
        "metric and timestamp",
        path=str(path),
        row=int(same_key[SOURCE_ROW]),
        column=VALUE,
    )


def read_failure_windows(path: Path, components: Collection[str]) -> list[FailureWindow]:
    """Read the labeled failure windows of a long-layout data set.

    Parameters
    ----------
    path : Path
        The labels CSV with the columns ``component,start,end``.
    components : collection of str
        The components that have telemetry; a label for any other component raises.

    Returns
    -------
    list of FailureWindow
        In file order. A header without rows gives an empty list.

    Raises
    ------
    InputError
        If the file is missing or not CSV, a column is missing, or a row names an
        unknown component, contains a time without a UTC offset or ends before it starts.
    """
    if not path.is_file():
        raise InputError(
            f"labels file not found; expected a CSV with the columns {','.join(LABEL_COLUMNS)}",
            path=str(path),
        )
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            na_filter=False,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
        )
    except pd.errors.EmptyDataError:
        raise InputError(
            f"the file is empty; expected a header line {','.join(LABEL_COLUMNS)}",
            path=str(path),
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read as CSV: {error}", path=str(path)) from None

    found = [str(column) for column in frame.columns]
    for column in LABEL_COLUMNS:
        if column not in frame.columns:
            raise InputError(
                f"missing column {column!r}; expected {list(LABEL_COLUMNS)}, found {found}",
                path=str(path),
                column=column,
            )

    known = set(components)
    windows = []
    # Line 1 is the header, so data row i (0-based) is line i + 2.
    for index, row in enumerate(frame[list(LABEL_COLUMNS)].itertuples(index=False)):
        line = index + 2
        cells = [str(cell).strip() for cell in row]
        if not any(cells):
            continue
        component, start_text, end_text = cells
        if component not in known:
            raise InputError(
                f"unknown component {component!r}; the telemetry has no rows for it "
                f"(it has {len(known)} components such as {sorted(known)[:3]})",
                path=str(path),
                row=line,
                column=COMPONENT,
            )
        start = _label_time(start_text, path, line, START)
        end = _label_time(end_text, path, line, END)
        if end < start:
            raise InputError(
                f"end {end_text!r} is before start {start_text!r}; a failure instant has "
                "start == end",
                path=str(path),
                row=line,
                column=END,
            )
        windows.append(FailureWindow(component, start, end, line))
    logger.debug("backtest long: %d failure windows in %s", len(windows), path)
    return windows


def _label_time(text: str, path: Path, line: int, column: str) -> pd.Timestamp:
    try:
        timestamp = pd.Timestamp(text) if text else pd.NaT
    except ValueError:
        timestamp = pd.NaT
    if pd.isna(timestamp):
        raise InputError(
            f"invalid time {text!r}; expected ISO 8601 with a UTC offset, e.g. "
            "2024-01-01T00:00:00Z",
            path=str(path),
            row=line,
            column=column,
        )
    if timestamp.tzinfo is None:
        raise InputError(
            f"time {text!r} has no UTC offset; add 'Z' or '+00:00'",
            path=str(path),
            row=line,
            column=column,
        )
    return timestamp.tz_convert("UTC")


def split_component(
    component: str,
    rows: pd.DataFrame,
    windows: Sequence[FailureWindow],
    split: TrainSplit,
    step_seconds: float | None = None,
    labels_path: Path | None = None,
) -> ComponentData:
    """Grid one component's rows, split the grid in time and label the scored part.

    Parameters
    ----------
    component : str
    rows : pandas.DataFrame
        The component's long rows (``timestamp``, ``metric``, ``value``).
    windows : sequence of FailureWindow
        Failure windows of every component; those of other components are ignored.
    split : TrainSplit
    step_seconds : float or None, default=None
        Grid spacing; None infers it as the median spacing of the component's timestamps.
    labels_path : Path or None, default=None
        The labels file, named in errors about a window.

    Raises
    ------
    InputError
        If the component has fewer than two distinct timestamps, too few training grid
        points, no grid point to score, or a failure window outside its telemetry.
    """
    if step_seconds is None:
        try:
            step_seconds = infer_step_seconds(rows[TIMESTAMP])
        except ValueError as error:
            raise InputError(
                f"component {component!r}: cannot infer the grid step ({error}); give "
                "--step-seconds"
            ) from None
    grid = build_grid(rows, step_seconds)
    n_train = _train_length(grid.index, split)
    if n_train < MIN_TRAIN_POINTS or n_train >= len(grid):
        raise InputError(
            f"component {component!r}: {n_train} of {len(grid)} grid points "
            f"(step {step_seconds:g} s, {grid.index[0].isoformat()} to "
            f"{grid.index[-1].isoformat()}) fall in the training part; expected at least "
            f"{MIN_TRAIN_POINTS} and at least one point to score; change --train-fraction "
            "or --train-until"
        )

    labels = np.zeros(len(grid), dtype=np.int8)
    failures_in_train = failures_in_test = 0
    step = pd.Timedelta(seconds=step_seconds)
    for window in windows:
        if window.component != component:
            continue
        # Bin (t - step, t] overlaps [start, end] exactly when start <= t < end + step.
        first = int(grid.index.searchsorted(window.start, side="left"))
        stop = int(grid.index.searchsorted(window.end + step, side="left"))
        if first >= stop:
            raise InputError(
                f"the failure window {window.start.isoformat()} to {window.end.isoformat()} "
                f"of component {component!r} lies outside its telemetry "
                f"({grid.index[0].isoformat()} to {grid.index[-1].isoformat()})",
                path=str(labels_path) if labels_path is not None else None,
                row=window.line,
            )
        labels[first:stop] = 1
        if stop > n_train:
            failures_in_test += 1
        else:
            failures_in_train += 1

    return ComponentData(
        component=component,
        step_seconds=float(step_seconds),
        train=grid.iloc[:n_train],
        test=grid.iloc[n_train:],
        labels=labels[n_train:],
        failures_in_train=failures_in_train,
        failures_in_test=failures_in_test,
    )


def _train_length(index: pd.DatetimeIndex, split: TrainSplit) -> int:
    if split.until is not None:
        return int(index.searchsorted(split.until, side="left"))
    return math.floor(split.fraction * len(index))
