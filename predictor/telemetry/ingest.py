"""Ingest one telemetry source: read, validate, store, quarantine, account.

Every long row read ends in exactly one of three places: the store (``written``), the
quarantine file (``quarantined``: unparsable cells, failed validation, conflicting
values) or nowhere because it is already stored (``duplicates``). The summary checks
``written + quarantined + duplicates == rows_read`` and raises if a row went missing.
"""

from __future__ import annotations

import functools
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.compute as pc

from predictor.config import Settings, SourceConfig
from predictor.exceptions import PredictorError
from predictor.telemetry.long_parquet import CleanLongFile, read_clean_long_file
from predictor.telemetry.readers import RAW_VALUE, REASON, SOURCE_ROW, read_source
from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP, VALUE
from predictor.telemetry.store import AppendResult, TelemetryStore
from predictor.telemetry.store_adopt import adoptable_file
from predictor.telemetry.validate import validate

logger = logging.getLogger(__name__)

QUARANTINE_COLUMNS = [SOURCE_ROW, TIMESTAMP, COMPONENT, METRIC, RAW_VALUE, REASON]


class AccountingError(PredictorError, RuntimeError):
    """Rows were lost or double-counted inside ingest; this is a bug, not bad input."""


@dataclass
class IngestSummary:
    """Counts and outcome of one ingest, accounting for every row read.

    Attributes
    ----------
    source : str
        The source name.
    path : Path or str
        The input file, or the server URL of a Prometheus source.
    rows_read : int
        Long rows read (file rows times metrics).
    written : int
        Rows added to the store.
    quarantined : int
        Rows written to the quarantine file instead.
    duplicates : int
        Rows skipped because the store already had them, or they repeated an earlier
        row of the same file.
    components : list of str
        Components named by the rows that passed validation, sorted.
    first_timestamp, last_timestamp : Timestamp or None
        Time range of the rows that passed validation.
    quarantine_file : Path or None
        The CSV of quarantined rows, or None when no row was quarantined.
    reasons : dict of str to int
        Quarantined rows per reason.
    train_until : Timestamp or None
        Where the source's training part ends (see :func:`split_time`); None for a
        source with role ``"replay"``.
    """

    source: str
    path: Path | str
    rows_read: int
    written: int
    quarantined: int
    duplicates: int
    components: list[str] = field(default_factory=list)
    first_timestamp: pd.Timestamp | None = None
    last_timestamp: pd.Timestamp | None = None
    quarantine_file: Path | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    train_until: pd.Timestamp | None = None


def ingest_source(
    source: SourceConfig, settings: Settings, store: TelemetryStore | None = None
) -> IngestSummary:
    """Read a source, validate its rows, append them to the store, quarantine the rest.

    Parameters
    ----------
    source : SourceConfig
        The file to ingest.
    settings : Settings
        Declared components and metrics, and the state folders.
    store : TelemetryStore or None, default=None
        The store to append to; None opens the store at ``settings.telemetry_dir``.

    Returns
    -------
    IngestSummary

    Raises
    ------
    InputError
        If the file cannot be read as the declared format.
    PrometheusError
        If a Prometheus query fails.
    AccountingError
        If the row counts do not add up, which means a bug in ingest.

    Notes
    -----
    The rows of one ingest are committed to the store together: an ingest that fails,
    crashes or is killed stores none of them. Ingest is idempotent: a second run on the
    same input writes nothing and counts every stored row as a duplicate. Rows that were
    quarantined are quarantined again, with a new quarantine file.
    """
    store = store if store is not None else TelemetryStore(settings.telemetry_dir)

    clean = read_clean_long_file(source, settings)
    if clean is not None:
        return _ingest_clean_file(source, settings, store, clean)

    raw = read_source(source)
    good, invalid = validate(raw.rows, settings)

    # The quarantine file is written before the append commits, so a failure to write
    # it leaves the store unchanged.
    quarantined: dict[str, object] = {}

    def write_quarantine(appended: AppendResult) -> None:
        frame = _quarantine_frame(raw.rejected, invalid, appended.conflicts)
        quarantined["frame"] = frame
        quarantined["file"] = _write_quarantine(frame, source, settings.quarantine_dir)

    appended = store.append(good, before_commit=write_quarantine)
    quarantine: pd.DataFrame = quarantined["frame"]  # type: ignore[assignment]
    quarantine_file: Path | None = quarantined["file"]  # type: ignore[assignment]

    summary = IngestSummary(
        source=source.name,
        path=Path(source.path) if source.path is not None else source.location,
        rows_read=raw.rows_read,
        written=appended.written,
        quarantined=len(quarantine),
        duplicates=appended.duplicates,
        components=sorted(str(c) for c in pd.unique(good[COMPONENT])),
        first_timestamp=good[TIMESTAMP].min() if len(good) else None,
        last_timestamp=good[TIMESTAMP].max() if len(good) else None,
        quarantine_file=quarantine_file,
        reasons=dict(Counter(quarantine[REASON].tolist())),
        train_until=split_time(source, raw.rows),
    )
    _check_accounting(summary)
    _log_summary(summary)
    return summary


def _ingest_clean_file(
    source: SourceConfig, settings: Settings, store: TelemetryStore, clean: CleanLongFile
) -> IngestSummary:
    """Store rows that passed every check, from :func:`read_clean_long_file`.

    A file already in store order with no stored rows in its range becomes a part file
    as it is (:meth:`TelemetryStore.adopt`); any other goes through
    :meth:`TelemetryStore.append`. Only conflicts with stored rows or between rows of
    the file can be quarantined.
    """
    rows = clean.rows
    quarantined: dict[str, object] = {}

    def write_quarantine(appended: AppendResult) -> None:
        frame = _quarantine_frame(appended.conflicts)
        quarantined["frame"] = frame
        quarantined["file"] = _write_quarantine(frame, source, settings.quarantine_dir)

    adoptable = adoptable_file(clean.content, clean.file_schema, clean.metadata, rows)
    appended = None
    if adoptable is not None:
        appended = store.adopt(adoptable, before_commit=write_quarantine)
    if appended is None:
        appended = store.append(clean.numbered_rows(), before_commit=write_quarantine)
        components = clean.components()
    else:
        # The summary of an adopted file has one row per component, in name order.
        components = adoptable.summary.column(COMPONENT).to_pylist()
    quarantine: pd.DataFrame = quarantined["frame"]  # type: ignore[assignment]

    times = rows.column(TIMESTAMP)
    first, last = (pd.Timestamp(bound.value, tz="UTC") if bound.is_valid else None
                   for bound in pc.min_max(times).values())
    train_until = None
    if source.role != "replay" and rows.num_rows:
        train_until = split_time(
            source, clean.numbered_rows().select([TIMESTAMP, SOURCE_ROW]).to_pandas()
        )
    summary = IngestSummary(
        source=source.name,
        path=Path(str(source.path)),
        rows_read=rows.num_rows,
        written=appended.written,
        quarantined=len(quarantine),
        duplicates=appended.duplicates,
        components=components,
        first_timestamp=first,
        last_timestamp=last,
        quarantine_file=quarantined["file"],  # type: ignore[arg-type]
        reasons=dict(Counter(quarantine[REASON].tolist())),
        train_until=train_until,
    )
    _check_accounting(summary)
    _log_summary(summary)
    return summary


def _log_summary(summary: IngestSummary) -> None:
    logger.info(
        "ingest %s from %s: %d rows read, %d written, %d quarantined, %d duplicates, "
        "%d components, quarantine file %s",
        summary.source,
        summary.path,
        summary.rows_read,
        summary.written,
        summary.quarantined,
        summary.duplicates,
        len(summary.components),
        summary.quarantine_file or "(none: no row was quarantined)",
    )


def split_time(source: SourceConfig, rows: pd.DataFrame) -> pd.Timestamp | None:
    """Return the first timestamp that belongs to the replay part of a source.

    Rows strictly before the returned time train, rows at or after it replay.

    Parameters
    ----------
    source : SourceConfig
        The source; its ``role`` decides the split.
    rows : pandas.DataFrame
        The source's rows with a ``timestamp`` column and, when available,
        ``source_row`` (as returned by :func:`~predictor.telemetry.read_source`).

    Returns
    -------
    Timestamp or None
        For role ``"split"``, the time of the first file row after the training part,
        which contains ``floor(train_fraction * n_file_rows)`` rows capped at
        ``max_train_rows``; for ``"train"``, one nanosecond after the last timestamp;
        for ``"replay"``, or when ``rows`` is empty, None.

    Notes
    -----
    File rows are taken in time order. With ``source_row``, a file row is one line of
    the file, so a long-format file counts one row per metric value; without it, each
    distinct timestamp counts as one row.
    """
    if source.role == "replay" or rows.empty:
        return None
    if source.role == "train":
        return rows[TIMESTAMP].max() + pd.Timedelta(1, unit="ns")

    if source.train_fraction is None:
        raise ValueError(
            f"source {source.name!r}: train_fraction is required when role is 'split'"
        )
    if SOURCE_ROW in rows.columns:
        row_times = rows.groupby(SOURCE_ROW, sort=False)[TIMESTAMP].min()
    else:
        row_times = pd.Series(pd.unique(rows[TIMESTAMP]))
    row_times = row_times.sort_values(kind="stable").reset_index(drop=True)

    n_train = math.floor(source.train_fraction * len(row_times))
    if source.max_train_rows is not None:
        n_train = min(n_train, source.max_train_rows)
    if n_train >= len(row_times):
        return row_times.iloc[-1] + pd.Timedelta(1, unit="ns")
    return row_times.iloc[n_train]


def _quarantine_frame(*parts: pd.DataFrame) -> pd.DataFrame:
    """Stack rejected rows from every stage into the quarantine columns, in file order."""
    frames = []
    for part in parts:
        if part.empty:
            continue
        frame = pd.DataFrame(
            {
                SOURCE_ROW: part[SOURCE_ROW] if SOURCE_ROW in part else pd.NA,
                TIMESTAMP: part[TIMESTAMP],
                COMPONENT: part[COMPONENT],
                METRIC: part[METRIC],
                RAW_VALUE: part[RAW_VALUE] if RAW_VALUE in part else part[VALUE].map(str),
                REASON: part[REASON],
            }
        )
        frames.append(frame)
    if not frames:
        return _no_quarantine()
    return pd.concat(frames, ignore_index=True).sort_values(SOURCE_ROW, kind="stable")


@functools.cache
def _no_quarantine() -> pd.DataFrame:
    """Return the quarantine frame of an ingest without rejected rows (shared: never modify it)."""
    return pd.DataFrame({column: pd.Series([], dtype=object) for column in QUARANTINE_COLUMNS})


def _write_quarantine(frame: pd.DataFrame, source: SourceConfig, folder: Path) -> Path | None:
    if frame.empty:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S%fZ")
    safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", source.name)
    path = folder / f"{safe_name}-{stamp}.csv"

    output = frame.copy()
    output[TIMESTAMP] = output[TIMESTAMP].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").fillna("")
    temporary = path.with_name(f".{path.name}.tmp")
    output.to_csv(temporary, index=False, columns=QUARANTINE_COLUMNS)
    temporary.replace(path)
    return path


def _check_accounting(summary: IngestSummary) -> None:
    accounted = summary.written + summary.quarantined + summary.duplicates
    if accounted != summary.rows_read:
        raise AccountingError(
            f"ingest of source {summary.source!r}: written ({summary.written}) + quarantined "
            f"({summary.quarantined}) + duplicates ({summary.duplicates}) = {accounted}, "
            f"but {summary.rows_read} rows were read"
        )
