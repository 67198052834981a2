"""Read a backtest output folder back: its summary, per-row scores and labeled events.

``predictor backtest`` writes ``summary.json`` and one score file per series and detector
(see :mod:`predictor.evaluate.runner`). This module loads them, with the labels from the
data folder the summary names, for the report and the analysis notebook.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.evaluate import metrics
from predictor.evaluate.backtest import ENSEMBLE
from predictor.evaluate.nab import PROFILES, load_windows
from predictor.evaluate.runner import EARLY_ROWS, LABEL_FREE_THRESHOLD
from predictor.exceptions import InputError

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
MATRIX_FORMATS = ("smd", "asd", "matrix")
NAB_FORMAT = "nab"
# Per-entity metrics of an SMD/ASD summary, in report order.
MATRIX_METRICS = (
    "best_f1",
    "f1_label_free",
    "auc_pr",
    "vus_pr",
    "event_recall",
    "median_lead_rows",
    "false_alarms_per_day",
)
CALIBRATION_ENTITY_KEYS = ("brier", "brier_base_rate", "base_rate", "n_eval")
CALIBRATION_MEAN_KEYS = ("brier", "brier_base_rate")
RELIABILITY_KEYS = ("bin_low", "bin_high", "count", "mean_predicted", "observed_rate")


@dataclass(frozen=True)
class LabeledEvent:
    """One labeled anomaly of a series, in rows of its score file.

    Attributes
    ----------
    start, end : int
        First and last row (inclusive) in which an alarm detects the event: for SMD/ASD
        the labeled run widened by the early-warning rows before it, for NAB the
        labeled window.
    reference : int
        The row lead times are measured to: the first labeled row (SMD/ASD) or the
        labeled anomaly inside the window (NAB).
    """

    start: int
    end: int
    reference: int


@dataclass
class BacktestResults:
    """The outputs of one ``predictor backtest`` run.

    Build it with :func:`load_backtest`.

    Attributes
    ----------
    path : pathlib.Path
        The backtest output folder.
    summary : dict
        The parsed ``summary.json``.
    data_dir : pathlib.Path or None
        The data folder whose labels are read, or None when it was not found.
    notes : list of str
        What the report cannot show and why, for example when the labels are missing.
    """

    path: Path
    summary: dict[str, Any]
    data_dir: Path | None
    notes: list[str] = field(default_factory=list)

    @property
    def data_format(self) -> str:
        """The backtest's ``--format``: ``nab``, ``smd`` or ``asd``."""
        return str(self.summary["format"])

    @property
    def is_nab(self) -> bool:
        """Whether the output uses the NAB layout and scores."""
        return self.data_format == NAB_FORMAT

    @property
    def detectors(self) -> list[str]:
        """The ensemble, then every other detector, in the summary's order."""
        names = list(self._detector_rows())
        return [ENSEMBLE, *(name for name in names if name != ENSEMBLE)]

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The ``calibration`` section of the summary, or None when the run has none.

        A run whose calibration could not be fitted (its section has only the reason,
        under ``error``) counts as having none.
        """
        calibration = self.summary.get("calibration")
        if isinstance(calibration, dict) and "error" in calibration:
            return None
        return calibration

    def _detector_rows(self) -> dict[str, Any]:
        return self.summary["detectors"] if self.is_nab else self.summary["mean"]

    def series(self) -> list[str]:
        """List the scored series: entity names (SMD/ASD) or ``<category>/<file>`` (NAB)."""
        if not self.is_nab:
            return list(self.summary["per_entity"])
        folder = self.path / ENSEMBLE
        prefix = f"{ENSEMBLE}_"
        return sorted(
            f"{path.parent.name}/{path.name.removeprefix(prefix)}"
            for path in folder.glob(f"*/{prefix}*.csv")
        )

    def score_path(self, series: str, detector: str = ENSEMBLE) -> Path:
        """Return the score file of one series and detector in the backtest layout."""
        if self.is_nab:
            category, file_name = series.split("/", 1)
            return self.path / detector / category / f"{detector}_{file_name}"
        if detector == ENSEMBLE:
            return self.path / f"{series}.csv"
        return self.path / detector / f"{series}.csv"

    def scores(self, series: str, detector: str = ENSEMBLE) -> pd.DataFrame:
        """Read the per-row scores of one series and detector.

        Returns
        -------
        pandas.DataFrame
            ``anomaly_score`` (float in [0, 1]) per row in file order, with ``timestamp``
            (naive, as in the NAB file) for NAB series and ``row`` for SMD/ASD entities.

        Raises
        ------
        InputError
            If the file is missing, lacks a column, or contains a score that is not a
            finite number.
        """
        path = self.score_path(series, detector)
        key_column = "timestamp" if self.is_nab else "row"
        try:
            frame = pd.read_csv(path)
        except FileNotFoundError:
            raise InputError(
                f"score file of {detector!r} for {series!r} not found", path=str(path)
            ) from None
        for column in (key_column, "anomaly_score"):
            if column not in frame.columns:
                raise InputError(
                    f"missing column; expected {key_column},anomaly_score, got "
                    f"{list(frame.columns)!r}",
                    path=str(path),
                    column=column,
                )
        values = pd.to_numeric(frame["anomaly_score"], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype="float64"))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"expected a finite number, got {frame['anomaly_score'].iloc[first]!r}",
                path=str(path),
                row=first + 2,
                column="anomaly_score",
            )
        frame["anomaly_score"] = values.astype("float64")
        if self.is_nab:
            frame["timestamp"] = pd.to_datetime(frame["timestamp"])
        return frame[[key_column, "anomaly_score"]]

    def events(self, series: str, scores: pd.DataFrame) -> list[LabeledEvent]:
        """Read the labeled events of a series, in rows of its score frame ``scores``.

        ``scores`` is the frame :meth:`scores` returns for the series. The result is
        empty when the data folder was not found, which ``notes`` records.

        Raises
        ------
        InputError
            If a label file is malformed or does not match the score file's rows.
        """
        if self.data_dir is None:
            return []
        if self.is_nab:
            return self._nab_events(series, pd.DatetimeIndex(scores["timestamp"]))
        return self._matrix_events(series, len(scores))

    def _matrix_events(self, entity: str, n_rows: int) -> list[LabeledEvent]:
        path = self.data_dir / "test_label" / f"{entity}.txt"  # type: ignore[operator]
        labels = _read_row_labels(path)
        if len(labels) != n_rows:
            raise InputError(
                f"{len(labels)} labels for {n_rows} scored rows; expected one label per "
                "row of the score file",
                path=str(path),
            )
        runs = metrics.label_events(labels)
        # The detection window opens EARLY_ROWS before each run, as in the backtest's
        # lead time and event recall.
        windows = metrics._detection_windows(runs, EARLY_ROWS)
        return [
            LabeledEvent(first, end, start)
            for (first, end), (start, _) in zip(windows, runs, strict=True)
        ]

    def _nab_events(self, key: str, timestamps: pd.DatetimeIndex) -> list[LabeledEvent]:
        labels_dir = self.data_dir / "labels"  # type: ignore[operator]
        windows = load_windows(labels_dir / "combined_windows.json").get(key, [])
        anomalies = _read_nab_anomalies(labels_dir / "combined_labels.json", key)

        events = []
        for window_start, window_end in windows:
            first = int(timestamps.searchsorted(window_start, side="left"))
            last = int(timestamps.searchsorted(window_end, side="right")) - 1
            if last < first:
                continue
            inside = [stamp for stamp in anomalies if window_start <= stamp <= window_end]
            # NOTE: a window without a label in combined_labels.json is measured from its
            # middle row, where NAB centres its windows on the label.
            reference = (
                int(timestamps.searchsorted(inside[0], side="left"))
                if inside
                else (first + last) // 2
            )
            events.append(LabeledEvent(first, last, min(reference, last)))
        return events


def _read_row_labels(path: Path) -> np.ndarray:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("label file not found", path=str(path)) from None
    values = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        value = line.strip()
        if value not in ("0", "1"):
            raise InputError(f"expected 0 or 1, got {value!r}", path=str(path), row=line_number)
        values.append(int(value))
    return np.asarray(values, dtype=np.int8)


def _read_nab_anomalies(path: Path, key: str) -> list[pd.Timestamp]:
    if not path.is_file():
        return []
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"label file is not valid JSON: {error}", path=str(path)) from None
    entries = content.get(key, []) if isinstance(content, dict) else None
    if not isinstance(entries, list):
        raise InputError(
            f"expected a JSON object mapping {key!r} to a list of times", path=str(path)
        )
    try:
        return sorted(pd.Timestamp(entry) for entry in entries)
    except (TypeError, ValueError):
        raise InputError(
            f"entry {key!r}: expected ISO 8601 times, got {entries!r}", path=str(path)
        ) from None


def load_backtest(path: str | Path, data_dir: str | Path | None = None) -> BacktestResults:
    """Load a backtest output folder written by ``predictor backtest``.

    Parameters
    ----------
    path : str or pathlib.Path
        The folder given to ``predictor backtest --out``.
    data_dir : str or pathlib.Path or None, default=None
        The labeled data folder; None uses the ``data`` entry of ``summary.json``. When
        that folder does not exist, scores are shown without labeled events and
        ``notes`` records why.

    Returns
    -------
    BacktestResults

    Raises
    ------
    InputError
        If the folder or ``summary.json`` is missing, the summary is not valid JSON, or
        a key the report needs is missing or has the wrong type. The message names the
        file and the key.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise InputError("backtest output folder not found", path=str(folder))
    summary_path = folder / SUMMARY_FILE
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(
            f"{SUMMARY_FILE} not found; expected the --out folder of `predictor backtest`",
            path=str(summary_path),
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"invalid JSON: {error}", path=str(summary_path)) from None
    _check_summary(summary, summary_path)

    results = BacktestResults(path=folder, summary=summary, data_dir=None)
    labels_dir = Path(data_dir) if data_dir is not None else Path(summary["data"])
    if labels_dir.is_dir():
        results.data_dir = labels_dir
    else:
        logger.warning("backtest report: data folder %s not found, no labels shown", labels_dir)
        results.notes.append(
            f"The labeled data folder {str(labels_dir)!r} was not found, so labeled events "
            "and lead times are not shown."
        )
    return results


def _check_summary(summary: Any, path: Path) -> None:
    """Raise InputError naming the first key the report needs that is missing or wrong."""
    if not isinstance(summary, dict):
        raise InputError(f"expected a JSON object, got {type(summary).__name__}", path=str(path))
    for key in ("format", "data", "comparison"):
        if key not in summary:
            raise InputError(f"missing key {key!r}", path=str(path))
    data_format = summary["format"]
    if data_format != NAB_FORMAT and data_format not in MATRIX_FORMATS:
        raise InputError(
            f"key 'format': expected one of {[NAB_FORMAT, *MATRIX_FORMATS]}, got {data_format!r}",
            path=str(path),
        )

    if data_format == NAB_FORMAT:
        _check_table(summary, "detectors", list(PROFILES), path)
    else:
        _check_table(summary, "mean", MATRIX_METRICS, path)
        per_entity = summary.get("per_entity")
        if not isinstance(per_entity, dict) or not per_entity:
            raise InputError("key 'per_entity': expected a non-empty object", path=str(path))
        for entity, by_detector in per_entity.items():
            if not isinstance(by_detector, dict) or ENSEMBLE not in by_detector:
                raise InputError(
                    f"key 'per_entity.{entity}': expected an object with an {ENSEMBLE!r} entry",
                    path=str(path),
                )
    calibration = summary.get("calibration")
    if isinstance(calibration, dict) and "error" in calibration:
        return
    if calibration is not None:
        _check_calibration(calibration, path)


def _check_table(summary: dict[str, Any], key: str, columns: Sequence[str], path: Path) -> None:
    table = summary.get(key)
    if not isinstance(table, dict) or ENSEMBLE not in table:
        raise InputError(
            f"key {key!r}: expected an object of detectors with an {ENSEMBLE!r} entry",
            path=str(path),
        )
    for detector, row in table.items():
        missing = [column for column in columns if not isinstance(row, dict) or column not in row]
        if missing:
            raise InputError(f"key '{key}.{detector}': missing {missing}", path=str(path))


def _check_calibration(calibration: Any, path: Path) -> None:
    if not isinstance(calibration, dict):
        raise InputError(
            f"key 'calibration': expected an object, got {type(calibration).__name__}",
            path=str(path),
        )
    for key in ("per_entity", "mean", "reliability"):
        if key not in calibration:
            raise InputError(f"key 'calibration.{key}' is missing", path=str(path))
    if not isinstance(calibration["per_entity"], dict):
        raise InputError("key 'calibration.per_entity': expected an object", path=str(path))
    rows: list[tuple[str, Any, tuple[str, ...]]] = [
        (f"per_entity.{entity}", row, CALIBRATION_ENTITY_KEYS)
        for entity, row in calibration["per_entity"].items()
    ]
    rows.append(("mean", calibration["mean"], CALIBRATION_MEAN_KEYS))
    if not isinstance(calibration["reliability"], list):
        raise InputError("key 'calibration.reliability': expected a list", path=str(path))
    rows.extend(
        (f"reliability[{index}]", row, RELIABILITY_KEYS)
        for index, row in enumerate(calibration["reliability"])
    )
    for key, row, expected in rows:
        missing = [name for name in expected if not isinstance(row, dict) or name not in row]
        if missing:
            raise InputError(f"key 'calibration.{key}': missing {missing}", path=str(path))


def metric_table(results: BacktestResults) -> pd.DataFrame:
    """Return one row per detector with its mean metrics (SMD/ASD) or NAB scores."""
    columns = list(PROFILES) if results.is_nab else list(MATRIX_METRICS)
    rows = results._detector_rows()
    table = pd.DataFrame(
        [[rows[name].get(column) for column in columns] for name in results.detectors],
        index=pd.Index(results.detectors, name="detector"),
        columns=columns,
        dtype="float64",
    )
    return table


def entity_table(results: BacktestResults, detector: str = ENSEMBLE) -> pd.DataFrame:
    """Return one row per SMD/ASD entity with ``detector``'s metrics; empty for NAB."""
    if results.is_nab:
        return pd.DataFrame(columns=list(MATRIX_METRICS), dtype="float64")
    per_entity = results.summary["per_entity"]
    return pd.DataFrame(
        [
            [per_entity[entity][detector].get(column) for column in MATRIX_METRICS]
            for entity in per_entity
        ],
        index=pd.Index(list(per_entity), name="entity"),
        columns=list(MATRIX_METRICS),
        dtype="float64",
    )


def alarm_onsets(
    scores: Sequence[float] | np.ndarray | pd.Series, threshold: float = LABEL_FREE_THRESHOLD
) -> np.ndarray:
    """Return the rows where the score reaches ``threshold`` after being below it.

    The first row counts as an onset when it is already at or above the threshold.

    Examples
    --------
    >>> alarm_onsets([0.8, 0.9, 0.1, 0.7, 0.2], threshold=0.7).tolist()
    [0, 3]
    """
    flags = np.asarray(scores, dtype="float64") >= threshold
    previous = np.concatenate([[False], flags[:-1]])
    return np.flatnonzero(flags & ~previous)


def lead_time_table(
    results: BacktestResults,
    detector: str = ENSEMBLE,
    threshold: float = LABEL_FREE_THRESHOLD,
) -> pd.DataFrame:
    """Measure the lead time of ``detector``'s first alarm before every labeled event.

    An alarm is a row with a score at or above ``threshold`` (default: the label-free
    threshold of the backtest, the score at which the risk levels raise ``high``).

    Returns
    -------
    pandas.DataFrame
        One row per event: ``series``, ``event`` (1-based), ``start_row``, ``end_row``,
        ``reference_row``, ``first_alarm_row`` (NaN when missed) and ``lead_rows``
        (``reference_row - first_alarm_row``; positive means before the event, NaN when
        missed). Empty when no labels were found.
    """
    rows = []
    for series in results.series():
        frame = results.scores(series, detector)
        alarms = frame["anomaly_score"].to_numpy() >= threshold
        for number, event in enumerate(results.events(series, frame), start=1):
            hits = np.flatnonzero(alarms[event.start : event.end + 1])
            first_alarm = event.start + int(hits[0]) if hits.size else None
            rows.append(
                {
                    "series": series,
                    "event": number,
                    "start_row": event.start,
                    "end_row": event.end,
                    "reference_row": event.reference,
                    "first_alarm_row": first_alarm,
                    "lead_rows": event.reference - first_alarm
                    if first_alarm is not None
                    else None,
                }
            )
    columns = [
        "series",
        "event",
        "start_row",
        "end_row",
        "reference_row",
        "first_alarm_row",
        "lead_rows",
    ]
    table = pd.DataFrame(rows, columns=columns)
    for column in ("first_alarm_row", "lead_rows"):
        table[column] = table[column].astype("float64")
    return table
