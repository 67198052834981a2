"""Labeled failures of a source, for lead-time reports and evaluation.

Two label layouts are read (``SourceConfig.labels_format``):

nab
    NAB's ``combined_labels.json`` (``labels_path``) lists the time of each labeled
    anomaly per data file, and ``combined_windows.json`` (``windows_path``) the anomaly
    windows around them. Each label is one failure; its window is the one containing it.
rows
    An SMD or ASD ``test_label`` file (``labels_path``): one 0 or 1 per row of the
    matrix source. Each run of consecutive 1s is one failure at the run's first row.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.config import SourceConfig
from predictor.exceptions import ConfigError, InputError
from predictor.telemetry.readers import matrix_timestamps

logger = logging.getLogger(__name__)

# A row label marks the anomaly itself; the hour before it is where an early warning
# counts, so it opens the window.
ROWS_WINDOW_LEAD = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class LabeledFailure:
    """One labeled failure of a component.

    Attributes
    ----------
    component : str
        The component that failed.
    failure_time : Timestamp
        When the failure was labeled (UTC).
    window_start, window_end : Timestamp
        The labeled anomaly window around the failure (UTC, inclusive).
    """

    component: str
    failure_time: pd.Timestamp
    window_start: pd.Timestamp
    window_end: pd.Timestamp


def read_labels(source: SourceConfig) -> list[LabeledFailure]:
    """Read the labeled failures of a source, sorted by failure time.

    Parameters
    ----------
    source : SourceConfig
        A source with ``labels_format`` and ``labels_path`` set (and ``windows_path``
        for NAB labels).

    Returns
    -------
    list of LabeledFailure
        Empty when the source has no labels configured.

    Raises
    ------
    InputError
        If a label file is missing or malformed, or a NAB label lies in no window.
    ConfigError
        If the label settings are incomplete.
    """
    if source.labels_path is None:
        return []
    if source.labels_format == "nab":
        failures = _read_nab_labels(source, Path(source.labels_path))
    elif source.labels_format == "rows":
        failures = _read_row_labels(source, Path(source.labels_path))
    else:
        raise ConfigError(
            f"source {source.name!r}: labels_format must be 'nab' or 'rows' when "
            f"labels_path is set, got {source.labels_format!r}"
        )
    logger.debug("source %s: %d labeled failures", source.name, len(failures))
    return sorted(failures, key=lambda failure: failure.failure_time)


def labeled_component(source: SourceConfig) -> str:
    """Return the component that a source's labels belong to."""
    return source.component if source.component is not None else Path(str(source.path)).stem


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"label file {path.name!r} not found", path=str(path))
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InputError(f"invalid JSON: {error}", path=str(path)) from None


def _entry(table: Any, key: str, path: Path) -> list[Any]:
    if not isinstance(table, dict):
        raise InputError(
            f"expected a JSON object keyed by data file, got {type(table).__name__}",
            path=str(path),
        )
    if key not in table:
        examples = sorted(table)[:3]
        raise InputError(
            f"no entry for labels_key {key!r}; the file has {len(table)} keys such as {examples}",
            path=str(path),
        )
    entry = table[key]
    if not isinstance(entry, list):
        raise InputError(f"entry {key!r} must be a list, got {entry!r}", path=str(path))
    return entry


def _utc(value: Any, path: Path, key: str) -> pd.Timestamp:
    # NAB label times have no offset and are UTC, like the NAB data files.
    try:
        timestamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise InputError(
            f"entry {key!r}: expected an ISO 8601 time, got {value!r}", path=str(path)
        ) from None
    if timestamp.tzinfo is None:
        return timestamp.tz_localize("UTC").as_unit("ns")
    return timestamp.tz_convert("UTC").as_unit("ns")


def _read_nab_labels(source: SourceConfig, labels_path: Path) -> list[LabeledFailure]:
    if source.windows_path is None:
        raise ConfigError(
            f"source {source.name!r}: windows_path is required when labels_format is 'nab'"
        )
    windows_path = Path(source.windows_path)
    # NAB keys are "<category>/<file name>", which matches the data file's last two parts.
    data_path = Path(str(source.path))
    key = source.labels_key or f"{data_path.parent.name}/{data_path.name}"

    labels = [
        _utc(value, labels_path, key)
        for value in _entry(_load_json(labels_path), key, labels_path)
    ]
    windows = []
    for window in _entry(_load_json(windows_path), key, windows_path):
        if not isinstance(window, list) or len(window) != 2:
            raise InputError(
                f"entry {key!r}: expected windows as [start, end] pairs, got {window!r}",
                path=str(windows_path),
            )
        windows.append((_utc(window[0], windows_path, key), _utc(window[1], windows_path, key)))

    component = labeled_component(source)
    failures = []
    for label in labels:
        containing = [(start, end) for start, end in windows if start <= label <= end]
        if not containing:
            raise InputError(
                f"entry {key!r}: label {str(label)!r} lies in no anomaly window of {windows_path}",
                path=str(labels_path),
            )
        start, end = containing[0]
        failures.append(LabeledFailure(component, label, start, end))
    return failures


def _read_row_labels(source: SourceConfig, path: Path) -> list[LabeledFailure]:
    if not path.is_file():
        raise InputError(f"label file {path.name!r} not found", path=str(path))
    try:
        # Blank lines are kept so that line i stays row i of the matrix source.
        text = (
            pd.read_csv(
                path, header=None, dtype=str, skip_blank_lines=False, keep_default_na=False
            )
            .iloc[:, 0]
            .str.strip()
        )
    except pd.errors.EmptyDataError:
        return []
    flags = pd.to_numeric(text, errors="coerce")
    bad = ~flags.isin([0, 1])
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputError(
            f"expected 0 or 1, got {text.iloc[first]!r}", path=str(path), row=first + 1
        )

    marked = flags.to_numpy(dtype=np.int8)
    # Run starts are where the flag rises from 0 to 1, ends where it falls.
    edges = np.diff(np.concatenate([[0], marked, [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    times = matrix_timestamps(source, len(marked))

    component = labeled_component(source)
    return [
        LabeledFailure(component, times[start], times[start] - ROWS_WINDOW_LEAD, times[end])
        for start, end in zip(starts, ends, strict=True)
    ]
