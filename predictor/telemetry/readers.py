"""Readers that turn telemetry files into long UTC rows.

Every format ends in the same shape: one row per (file row, metric) with ``timestamp``
(``datetime64[ns, UTC]``), ``component``, ``metric``, ``value`` (float64) and
``source_row``. Cells that cannot be parsed are not dropped: they go to
:attr:`RawTelemetry.rejected` with a reason, so the ingest summary can account for them.

Formats (``SourceConfig.format``)
---------------------------------
long
    CSV or Parquet with the columns ``timestamp,component,metric,value``.
wide
    CSV or Parquet with a timestamp column and one column per metric. The component comes
    from ``component_column``, else a column named ``component``, else
    ``SourceConfig.component``, else the file stem.
nab
    The Numenta Anomaly Benchmark layout ``timestamp,value``, naive times in UTC.
matrix
    The SMD and ASD layout: a headerless CSV (often gzipped) with one column per metric.
    Row ``i`` has the time ``start + (row_offset + i) * step_seconds``.

A file name ending in ``.parquet`` or ``.pq`` is read as Parquet, anything else as CSV;
``.gz`` files are decompressed.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import re
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from predictor.config import SourceConfig
from predictor.exceptions import ConfigError, InputError
from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP, VALUE

logger = logging.getLogger(__name__)

SOURCE_ROW = "source_row"
REASON = "reason"
RAW_VALUE = "raw_value"
RAW_COLUMNS = (TIMESTAMP, COMPONENT, METRIC, VALUE, SOURCE_ROW)
REJECTED_COLUMNS = (*RAW_COLUMNS, REASON, RAW_VALUE)

# Reasons are fixed strings so that the ingest summary can count rows per reason.
REASON_BAD_TIMESTAMP = "invalid timestamp"
REASON_IMPLAUSIBLE_EPOCH = "implausible epoch timestamp (before 2000-01-01 or in the future)"
REASON_NONEXISTENT_LOCAL = "local time does not exist in the zone (daylight-saving gap)"
REASON_NON_NUMERIC = "non-numeric value"
REASON_NON_FINITE = "missing or non-finite value"

EPOCH_UNITS = {"s": 9, "ms": 6, "us": 3, "ns": 0}
# An epoch before this instant is a unit mistake or a zero, never real telemetry.
EARLIEST_PLAUSIBLE = pd.Timestamp("2000-01-01", tz="UTC")
# Clock skew between collectors and this host is tolerated up to one day.
MAX_FUTURE = pd.Timedelta(days=1)

PARQUET_SUFFIXES = (".parquet", ".pq")
GZIP_MAGIC = b"\x1f\x8b"
THOUSANDS_CANDIDATES = (",", ".", " ", "\u00a0", "'", "_")
_OFFSET_PATTERN = r"[T ]\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"
_EPOCH_PATTERN = r"\s*[+-]?\d+(?:\.\d*)?\s*"


@dataclass
class RawTelemetry:
    """Long rows read from one source, before validation.

    Attributes
    ----------
    rows : pandas.DataFrame
        Columns ``timestamp`` (``datetime64[ns, UTC]``), ``component``, ``metric``,
        ``value`` (float64) and ``source_row``, in file order.
    rejected : pandas.DataFrame
        The cells that could not be parsed: the same columns plus ``reason`` and
        ``raw_value`` (the input text that was rejected).
    rows_read : int
        Number of long rows read: file rows times metrics. Always equals
        ``len(rows) + len(rejected)``.
    """

    rows: pd.DataFrame
    rejected: pd.DataFrame
    rows_read: int


def empty_raw_rows() -> pd.DataFrame:
    """Return an empty frame with the columns and dtypes of :attr:`RawTelemetry.rows`."""
    return pd.DataFrame(
        {
            TIMESTAMP: pd.Series([], dtype="datetime64[ns, UTC]"),
            COMPONENT: pd.Series([], dtype=object),
            METRIC: pd.Series([], dtype=object),
            VALUE: pd.Series([], dtype="float64"),
            SOURCE_ROW: pd.Series([], dtype="int64"),
        }
    )


def empty_rejected_rows() -> pd.DataFrame:
    """Return an empty frame with the columns of :attr:`RawTelemetry.rejected`."""
    frame = empty_raw_rows()
    frame[REASON] = pd.Series([], dtype=object)
    frame[RAW_VALUE] = pd.Series([], dtype=object)
    return frame


def read_source(source: SourceConfig) -> RawTelemetry:
    """Read one telemetry source into long UTC rows.

    Parameters
    ----------
    source : SourceConfig
        The file and how to read it.

    Returns
    -------
    RawTelemetry
        Parsed rows and rejected cells, in file order.

    Raises
    ------
    InputError
        If the file is missing or unreadable, a required column is missing, naive local
        times cannot be converted to UTC without guessing, or a value column uses
        thousands separators that ``source.thousands`` does not declare.
    ConfigError
        If ``epoch_unit`` or ``timezone`` is not a known value.

    Notes
    -----
    ``source_row`` is the 1-based line number in a CSV file, counting the header as
    line 1, and the 1-based row number in a Parquet file or a headerless matrix.
    Lines whose cells are all empty are skipped and not counted.
    """
    if source.format == "prometheus":
        # Imported here because the Prometheus reader builds on this module.
        from predictor.telemetry.prometheus import read_prometheus

        return read_prometheus(source)

    path = Path(str(source.path))
    if not path.is_file():
        raise InputError(f"telemetry file not found for source {source.name!r}", path=str(path))
    _check_source_options(source)

    if source.format == "matrix":
        raw = _read_matrix(source, path)
    elif source.format == "openmetrics":
        from predictor.telemetry.openmetrics import read_openmetrics

        raw = read_openmetrics(source, path)
    else:
        raw = _read_table_format(source, path)

    logger.debug(
        "read source %s from %s: %d rows read, %d parsed, %d rejected",
        source.name,
        path,
        raw.rows_read,
        len(raw.rows),
        len(raw.rejected),
    )
    return raw


def matrix_timestamps(source: SourceConfig, n_rows: int) -> pd.DatetimeIndex:
    """Return the UTC times of the first ``n_rows`` rows of a matrix source.

    Row ``i`` has the time ``start + (row_offset + i) * step_seconds``. A ``start``
    without an offset is read as UTC.

    Parameters
    ----------
    source : SourceConfig
        A source with ``start`` and ``step_seconds`` set.
    n_rows : int
        Number of rows.

    Returns
    -------
    pandas.DatetimeIndex
        ``datetime64[ns, UTC]`` times.

    Raises
    ------
    ConfigError
        If ``start`` or ``step_seconds`` is missing or invalid.
    """
    if source.start is None or source.step_seconds is None:
        raise ConfigError(
            f"source {source.name!r}: 'start' and 'step_seconds' are required to compute "
            f"row times, got start={source.start!r}, step_seconds={source.step_seconds!r}"
        )
    if source.step_seconds <= 0:
        raise ConfigError(
            f"source {source.name!r}: step_seconds must be positive, got {source.step_seconds!r}"
        )
    try:
        start = pd.Timestamp(source.start)
    except ValueError:
        raise ConfigError(
            f"source {source.name!r}: start is not an ISO 8601 time, got {source.start!r}"
        ) from None
    start = start.tz_localize("UTC") if start.tzinfo is None else start.tz_convert("UTC")

    step_ns = round(source.step_seconds * 1e9)
    offsets_ns = (np.arange(n_rows, dtype=np.int64) + source.row_offset) * step_ns
    times = start.as_unit("ns") + pd.to_timedelta(offsets_ns, unit="ns")
    return pd.DatetimeIndex(times).as_unit("ns")


def _check_source_options(source: SourceConfig) -> None:
    if source.epoch_unit is not None and source.epoch_unit not in EPOCH_UNITS:
        raise ConfigError(
            f"source {source.name!r}: epoch_unit must be one of {list(EPOCH_UNITS)}, "
            f"got {source.epoch_unit!r}"
        )
    if source.timezone is not None:
        try:
            zoneinfo.ZoneInfo(source.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"source {source.name!r}: timezone is not an IANA zone name such as "
                f"'Europe/Berlin', got {source.timezone!r}"
            ) from None
    if source.thousands is not None and source.thousands == source.decimal:
        raise ConfigError(
            f"source {source.name!r}: thousands and decimal must differ, both are "
            f"{source.decimal!r}"
        )


# --- file access -----------------------------------------------------------------------


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def _compression(path: Path) -> str | None:
    """Return "gzip" for gzip data whatever the file name, else let pandas infer it."""
    with path.open("rb") as handle:
        if handle.read(2) == GZIP_MAGIC:
            return "gzip"
    return "infer"


def _csv_error(error: Exception, path: Path, encoding: str) -> InputError:
    """Turn a CSV parser or decoding error into an InputError naming the line."""
    if isinstance(error, UnicodeDecodeError):
        opener = gzip.open if _compression(path) == "gzip" else open
        with opener(path, "rb") as handle:
            head = handle.read(error.start)
        line = head.count(b"\n") + 1
        byte = error.object[error.start : error.start + 1]
        return InputError(
            f"byte {byte!r} is not valid {encoding} text; set encoding in the source config "
            'to the file\'s encoding (for example "latin-1" or "utf-16")',
            path=str(path),
            row=line,
        )
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(error))
    if match:
        return InputError(
            f"expected {match[1]} fields as in the header, got {match[3]}",
            path=str(path),
            row=int(match[2]),
        )
    return InputError(f"cannot read as CSV: {str(error).strip()}", path=str(path))


def _read_header_file(path: Path, encoding: str = "utf-8-sig") -> tuple[pd.DataFrame, np.ndarray]:
    """Read a CSV or Parquet file with a header; return the frame and its row numbers."""
    if _is_parquet(path):
        try:
            frame = pq.read_table(path).to_pandas()
        except (pa.ArrowInvalid, OSError) as error:
            raise InputError(f"cannot read as Parquet: {error}", path=str(path)) from None
        return frame, np.arange(1, len(frame) + 1, dtype=np.int64)

    compression = _compression(path)
    try:
        # Every cell is read as text so that nothing is coerced before we look at it:
        # a "1,024" must not silently become NaN.
        frame = pd.read_csv(
            path,
            dtype=str,
            na_filter=False,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding=encoding,
            compression=compression,
        )
    except pd.errors.EmptyDataError:
        return pd.DataFrame(), np.array([], dtype=np.int64)
    except (pd.errors.ParserError, UnicodeError) as error:
        raise _csv_error(error, path, encoding) from None
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas takes the first column as the index when the first data row has one
        # field more than the header, which would shift every column of the file.
        raise InputError(
            f"expected {len(frame.columns)} fields as in the header, got "
            f"{len(frame.columns) + 1}; a decimal comma in an unquoted value "
            "splits it in two",
            path=str(path),
            row=2,
        )
    _reject_repeated_header(path, encoding, compression)

    # Line 1 is the header, so data row i (0-based) is line i + 2. Blank lines are kept
    # by the parser so that these numbers stay true, then dropped here.
    line_numbers = np.arange(2, len(frame) + 2, dtype=np.int64)
    blank = (frame == "").all(axis=1).to_numpy() if len(frame.columns) else np.array([])
    if blank.any():
        frame = frame.loc[~blank].reset_index(drop=True)
        line_numbers = line_numbers[~blank]
    return frame, line_numbers


def _reject_repeated_header(path: Path, encoding: str, compression: str | None) -> None:
    """Raise when a header name repeats; pandas would rename the second one silently."""
    opener = gzip.open if compression == "gzip" else open
    with opener(path, "rt", encoding=encoding, newline="") as handle:
        names = next(csv.reader(handle), [])
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(
            f"the header names columns {repeated} more than once; expected unique names",
            path=str(path),
            row=1,
            column=repeated[0],
        )


def _row_of(frame: pd.DataFrame, position: int) -> int | None:
    """Return the file row of the frame row at ``position``, when the reader recorded it."""
    rows = frame.attrs.get(SOURCE_ROW)
    return int(rows[position]) if rows is not None and position < len(rows) else None


def _require_columns(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    found = [str(column) for column in frame.columns]
    for column in columns:
        if column not in frame.columns:
            raise InputError(
                f"missing column {column!r}; found columns {found}",
                path=str(path),
                row=1,
                column=column,
            )


# --- table formats: long, wide, nab ---------------------------------------------------


def _read_table_format(source: SourceConfig, path: Path) -> RawTelemetry:
    frame, source_rows = _read_header_file(path, source.encoding)
    frame.attrs[SOURCE_ROW] = source_rows
    if frame.empty:
        # An empty file or a header without rows contains no telemetry, which is not an error.
        return RawTelemetry(empty_raw_rows(), empty_rejected_rows(), 0)

    if source.format == "long":
        return _read_long(source, path, frame, source_rows)
    if source.format == "wide":
        return _read_wide(source, path, frame, source_rows)
    if source.format == "nab":
        return _read_nab(source, path, frame, source_rows)
    raise ConfigError(
        f"source {source.name!r}: format must be one of ['long', 'wide', 'nab', 'matrix'], "
        f"got {source.format!r}"
    )


def _component_column(source: SourceConfig, frame: pd.DataFrame, path: Path) -> str | None:
    if source.component_column is not None:
        _require_columns(frame, [source.component_column], path)
        return source.component_column
    if COMPONENT in frame.columns:
        return COMPONENT
    return None


def _read_long(
    source: SourceConfig, path: Path, frame: pd.DataFrame, source_rows: np.ndarray
) -> RawTelemetry:
    component_column = _component_column(source, frame, path)
    required = [source.timestamp_column, METRIC, VALUE]
    if component_column is None and source.component is None:
        required.insert(1, COMPONENT)
    _require_columns(frame, required, path)

    components = _component_values(source, frame, component_column, path)
    metrics = frame[METRIC].astype(str).to_numpy(dtype=object)
    groups = [components, metrics]
    timestamps, ts_reasons = _parse_timestamps(
        source, path, frame, naive_is_utc=False, groups=groups
    )
    return _assemble(
        source,
        path,
        timestamps,
        ts_reasons,
        frame[source.timestamp_column],
        components,
        {VALUE: frame[VALUE]},
        source_rows,
        row_metrics=metrics,
    )


def _read_wide(
    source: SourceConfig, path: Path, frame: pd.DataFrame, source_rows: np.ndarray
) -> RawTelemetry:
    component_column = _component_column(source, frame, path)
    _require_columns(frame, [source.timestamp_column], path)
    if source.order_column is not None:
        _require_columns(frame, [source.order_column], path)

    if source.metric_names:
        _require_columns(frame, list(source.metric_names), path)
        metric_columns = list(source.metric_names)
    else:
        not_metrics = {source.timestamp_column, component_column, source.order_column}
        metric_columns = [str(c) for c in frame.columns if c not in not_metrics]
    if not metric_columns:
        raise InputError(
            f"no metric columns besides the timestamp and component; found columns "
            f"{[str(c) for c in frame.columns]}",
            path=str(path),
        )

    components = _component_values(source, frame, component_column, path)
    timestamps, ts_reasons = _parse_timestamps(
        source, path, frame, naive_is_utc=False, groups=[components]
    )
    values = {column: frame[column] for column in metric_columns}
    return _assemble(
        source,
        path,
        timestamps,
        ts_reasons,
        frame[source.timestamp_column],
        components,
        values,
        source_rows,
    )


def _read_nab(
    source: SourceConfig, path: Path, frame: pd.DataFrame, source_rows: np.ndarray
) -> RawTelemetry:
    _require_columns(frame, [source.timestamp_column, VALUE], path)
    component = source.component if source.component is not None else path.stem
    components = np.full(len(frame), component, dtype=object)
    timestamps, ts_reasons = _parse_timestamps(
        source, path, frame, naive_is_utc=True, groups=[components]
    )
    return _assemble(
        source,
        path,
        timestamps,
        ts_reasons,
        frame[source.timestamp_column],
        components,
        {source.metric: frame[VALUE]},
        source_rows,
    )


def _component_values(
    source: SourceConfig, frame: pd.DataFrame, column: str | None, path: Path
) -> np.ndarray:
    if column is None:
        name = source.component if source.component is not None else path.stem
        return np.full(len(frame), name, dtype=object)

    values = frame[column].astype(str).to_numpy(dtype=object)
    if source.component is not None and source.component_column is None:
        # Both the file and the config name the component, so raise instead of picking one.
        others = sorted(set(values) - {source.component})
        if others:
            raise InputError(
                f"the file names components {others[:5]} but the source config sets "
                f"component = {source.component!r}; remove one of them or set "
                "component_column",
                path=str(path),
                column=column,
            )
    return values


# --- matrix format (SMD, ASD) ---------------------------------------------------------


def _matrix_metric_names(source: SourceConfig) -> list[str]:
    if source.metric_names:
        return list(source.metric_names)
    if source.metric_names_path is None:
        raise ConfigError(
            f"source {source.name!r}: format 'matrix' needs 'metric_names' or 'metric_names_path'"
        )
    names_path = Path(source.metric_names_path)
    if not names_path.is_file():
        raise InputError(
            f"metric names file not found for source {source.name!r}", path=str(names_path)
        )
    text = names_path.read_text(encoding="utf-8-sig")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_matrix(source: SourceConfig, path: Path) -> RawTelemetry:
    names = _matrix_metric_names(source)
    if len(set(names)) != len(names):
        duplicated = sorted({name for name in names if names.count(name) > 1})
        raise InputError(f"metric names repeat: {duplicated}", path=str(path))

    frame = _read_matrix_cells(source, path)
    if frame.empty:
        return RawTelemetry(empty_raw_rows(), empty_rejected_rows(), 0)
    if frame.shape[1] != len(names):
        raise InputError(
            f"the file has {frame.shape[1]} columns but {len(names)} metric names are "
            "configured; the names must list every column in order",
            path=str(path),
        )
    frame.columns = names

    n_rows = len(frame)
    timestamps = pd.Series(matrix_timestamps(source, n_rows))
    ts_reasons = np.full(n_rows, None, dtype=object)
    raw_times = pd.Series(timestamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
    components = np.full(n_rows, source.component or path.stem, dtype=object)
    source_rows = np.arange(1, n_rows + 1, dtype=np.int64)
    values = {name: frame[name] for name in names}
    return _assemble(
        source, path, timestamps, ts_reasons, raw_times, components, values, source_rows
    )


def _read_matrix_cells(source: SourceConfig, path: Path) -> pd.DataFrame:
    """Read a headerless matrix, as float64 when every cell is a finite number."""
    if _is_parquet(path):
        frame, _ = _read_header_file(path, source.encoding)
        return frame

    options = {
        "header": None,
        "compression": _compression(path),
        "skip_blank_lines": False,
        "encoding": source.encoding,
    }
    if source.thousands is None and source.decimal == ".":
        # Fast path for clean files such as SMD (about 24,000 rows x 38 columns).
        try:
            frame = pd.read_csv(path, dtype="float64", **options)
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
        except (ValueError, pd.errors.ParserError):
            frame = None
        if frame is not None and np.isfinite(frame.to_numpy()).all():
            return frame

    # Slow path: read the text so that each bad cell can be rejected with its raw value.
    try:
        return pd.read_csv(path, dtype=str, na_filter=False, keep_default_na=False, **options)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeError) as error:
        raise _csv_error(error, path, source.encoding) from None


# --- timestamps -----------------------------------------------------------------------


def _parse_timestamps(
    source: SourceConfig,
    path: Path,
    frame: pd.DataFrame,
    *,
    naive_is_utc: bool,
    groups: list[np.ndarray],
) -> tuple[pd.Series, np.ndarray]:
    """Parse the timestamp column to UTC; return times and a per-row rejection reason.

    ``groups`` are the per-row keys (component, and metric for long files) inside which
    the order column gives the true order of repeated local times.
    """
    raw = frame[source.timestamp_column]
    n_rows = len(raw)
    reasons = np.full(n_rows, None, dtype=object)

    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        return raw.dt.tz_convert("UTC").astype("datetime64[ns, UTC]"), reasons
    if pd.api.types.is_datetime64_dtype(raw.dtype):
        naive = raw.astype("datetime64[ns]")
        utc = _localise(source, path, naive, naive_is_utc, groups, frame, reasons)
        return utc, reasons
    if pd.api.types.is_numeric_dtype(raw.dtype) and not pd.api.types.is_bool_dtype(raw.dtype):
        return _parse_epochs(source, raw, reasons)

    text = raw.astype(str).fillna("").str.strip()
    nonempty = text != ""
    looks_numeric = text.str.fullmatch(_EPOCH_PATTERN)
    if source.epoch_unit is not None or (nonempty.any() and looks_numeric[nonempty].all()):
        return _parse_epochs(source, text, reasons)

    has_offset = text.str.contains(_OFFSET_PATTERN, regex=True)
    utc = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    if has_offset.any():
        parsed = pd.to_datetime(text[has_offset], format="ISO8601", utc=True, errors="coerce")
        utc[has_offset] = parsed.astype("datetime64[ns, UTC]")
    naive_mask = ~has_offset
    if naive_mask.any():
        naive = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns]")
        parsed = pd.to_datetime(text[naive_mask], format="ISO8601", errors="coerce")
        naive[naive_mask] = parsed.astype("datetime64[ns]")
        localised = _localise(source, path, naive, naive_is_utc, groups, frame, reasons)
        utc[naive_mask] = localised[naive_mask]

    reasons[utc.isna().to_numpy() & _unset(reasons)] = REASON_BAD_TIMESTAMP
    return utc, reasons


def _parse_epochs(
    source: SourceConfig, raw: pd.Series, reasons: np.ndarray
) -> tuple[pd.Series, np.ndarray]:
    """Convert epoch numbers to UTC, per value unit inference unless a unit is declared.

    Magnitudes: seconds are about 1e9 today, milliseconds 1e12, microseconds 1e15 and
    nanoseconds 1e18, so the decade of each value gives its unit.
    """
    # Nullable dtypes keep an integer column integer even when some cells are missing.
    numbers = pd.to_numeric(raw, errors="coerce", dtype_backend="numpy_nullable")
    as_float = numbers.to_numpy(dtype="float64", na_value=np.nan)
    finite = np.isfinite(as_float)

    if source.epoch_unit is not None:
        exponent = np.full(len(as_float), EPOCH_UNITS[source.epoch_unit], dtype=np.int64)
    else:
        magnitude = np.abs(np.where(finite, as_float, 0.0))
        exponent = np.select(
            [magnitude < 1e11, magnitude < 1e14, magnitude < 1e17], [9, 6, 3], default=0
        )

    # Plausibility is checked on float seconds first, so that no value can overflow the
    # int64 nanosecond conversion below.
    seconds = np.where(finite, as_float / 10.0 ** (9 - exponent), np.nan)
    now = pd.Timestamp.now(tz="UTC")
    low = EARLIEST_PLAUSIBLE.value / 1e9
    high = (now + MAX_FUTURE).value / 1e9
    plausible = finite & (seconds >= low) & (seconds <= high)

    reasons[~finite & _unset(reasons)] = REASON_BAD_TIMESTAMP
    reasons[finite & ~plausible & _unset(reasons)] = REASON_IMPLAUSIBLE_EPOCH
    n_implausible = int((finite & ~plausible).sum())
    if n_implausible:
        logger.warning(
            "source %s: %d epoch timestamps are before 2000-01-01 or in the future and are "
            "rejected",
            source.name,
            n_implausible,
        )

    nanoseconds = np.zeros(len(as_float), dtype=np.int64)
    if pd.api.types.is_integer_dtype(numbers.dtype):
        # Integer arithmetic keeps microsecond and nanosecond epochs exact; float64 has
        # only 53 bits of mantissa.
        integers = numbers.to_numpy(dtype=np.int64, na_value=0)
        nanoseconds[plausible] = integers[plausible] * (10 ** exponent[plausible])
    else:
        nanoseconds[plausible] = np.round(
            as_float[plausible] * 10.0 ** exponent[plausible]
        ).astype(np.int64)
    utc = pd.Series(pd.to_datetime(nanoseconds, unit="ns", utc=True), index=raw.index)
    utc = utc.astype("datetime64[ns, UTC]").where(plausible, pd.NaT)
    return utc, reasons


def _localise(
    source: SourceConfig,
    path: Path,
    naive: pd.Series,
    naive_is_utc: bool,
    groups: list[np.ndarray],
    frame: pd.DataFrame,
    reasons: np.ndarray,
) -> pd.Series:
    """Turn naive times into UTC, refusing to guess the side of a daylight-saving change."""
    zone = source.timezone
    if zone is None:
        if naive_is_utc or naive.isna().all():
            return naive.dt.tz_localize("UTC")
        first = int(np.flatnonzero(naive.notna().to_numpy())[0])
        raise InputError(
            f"timestamp {str(naive.iloc[first])!r} has no UTC offset, so its zone is "
            "unknown; write times in ISO 8601 with an offset such as '+00:00', or set "
            'timezone = "<IANA zone>" in the source config',
            path=str(path),
            row=_row_of(frame, first),
            column=source.timestamp_column,
        )

    index = pd.DatetimeIndex(naive)
    as_summer = index.tz_localize(zone, ambiguous=np.ones(len(index), bool), nonexistent="NaT")
    as_winter = index.tz_localize(zone, ambiguous=np.zeros(len(index), bool), nonexistent="NaT")
    nonexistent = index.notna() & as_summer.isna()
    ambiguous = np.asarray(as_summer != as_winter) & ~nonexistent & index.notna()
    reasons[np.asarray(nonexistent) & _unset(reasons)] = REASON_NONEXISTENT_LOCAL

    localised = pd.Series(as_summer, index=naive.index)
    if ambiguous.any():
        localised = _resolve_ambiguous(source, path, naive, localised, ambiguous, groups, frame)
    return localised.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")


def _resolve_ambiguous(
    source: SourceConfig,
    path: Path,
    naive: pd.Series,
    localised: pd.Series,
    ambiguous: np.ndarray,
    groups: list[np.ndarray],
    frame: pd.DataFrame,
) -> pd.Series:
    """Localise the repeated hour of an autumn change from the true row order.

    The file order cannot be trusted (exports often sort by wall-clock time, which puts
    the two passes of the repeated hour next to each other), so ``order_column`` is
    required. Within each series, in true order, pandas' ``ambiguous="infer"`` assigns
    the times before the clock goes back to daylight-saving time and the rest to
    standard time, and raises when the order does not show the change.
    """
    first = int(np.flatnonzero(ambiguous)[0])
    if source.order_column is None:
        raise InputError(
            f"{int(ambiguous.sum())} local times fall in the repeated hour of a "
            f"daylight-saving change in {source.timezone!r} (first: {str(naive.iloc[first])!r}), "
            "so they could be either of two UTC times; set order_column to a column that "
            "gives the true row order, or write times with a UTC offset",
            path=str(path),
            row=_row_of(frame, first),
            column=source.timestamp_column,
        )

    order = pd.to_numeric(frame[source.order_column], errors="coerce")
    if order.isna().any():
        bad_row = int(np.flatnonzero(order.isna().to_numpy())[0])
        raise InputError(
            f"order_column must contain numbers, got {frame[source.order_column].iloc[bad_row]!r}",
            path=str(path),
            row=_row_of(frame, bad_row),
            column=source.order_column,
        )

    keys = pd.MultiIndex.from_arrays(groups) if len(groups) > 1 else pd.Index(groups[0])
    result = localised.copy()
    for key in pd.unique(keys[ambiguous]):
        members = np.flatnonzero((keys == key) & naive.notna().to_numpy())
        members = members[np.argsort(order.to_numpy()[members], kind="stable")]
        index = pd.DatetimeIndex(naive.iloc[members])
        try:
            local = index.tz_localize(source.timezone, ambiguous="infer", nonexistent="NaT")
        except ValueError as error:
            raise InputError(
                f"cannot tell the two passes of a repeated daylight-saving hour apart for "
                f"series {key!r} even in {source.order_column!r} order: {error}",
                path=str(path),
                column=source.timestamp_column,
            ) from None
        result.iloc[members] = local
    return result


# --- values and assembly --------------------------------------------------------------


def _parse_values(
    source: SourceConfig, column: str, series: pd.Series, path: Path, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Parse one value column to float64; return values and a per-cell reason or None."""
    reasons = np.full(len(series), None, dtype=object)
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    ):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        reasons[~np.isfinite(values)] = REASON_NON_FINITE
        return values, reasons

    text = series.astype(str).fillna("").str.strip()
    if source.thousands is not None:
        grouped = text.str.fullmatch(_thousands_pattern(source.thousands, source.decimal))
        text = text.where(~grouped, text.str.replace(source.thousands, "", regex=False))
    if source.decimal != ".":
        # A "." is not a decimal mark here; rejecting it avoids reading "1.500" as 1.5.
        text = text.where(~text.str.contains(".", regex=False), "not a number")
        text = text.str.replace(source.decimal, ".", regex=False)

    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    unparsed = np.isnan(values) & ~_is_nan_literal(text)
    if unparsed.any():
        _reject_undeclared_separators(source, column, series[unparsed], path, rows[unparsed])
        _reject_decimal_commas(source, column, series[unparsed], path, rows[unparsed])
        if unparsed.all():
            hint = (
                "; list the metric columns in metric_names to leave it out"
                if source.format == "wide"
                else ""
            )
            raise InputError(
                f"expected numbers, but the column contains only text (for example "
                f"{series[unparsed].iloc[0]!r}){hint}",
                path=str(path),
                row=int(rows[0]),
                column=column,
            )
    reasons[~np.isfinite(values)] = REASON_NON_FINITE
    reasons[unparsed] = REASON_NON_NUMERIC
    return values, reasons


def _unset(reasons: np.ndarray) -> np.ndarray:
    """Return where a per-row or per-cell reason array has no reason yet."""
    return pd.isna(reasons)


def _is_nan_literal(text: pd.Series) -> np.ndarray:
    """Return where a cell is empty or spells NaN, which is missing rather than malformed."""
    lowered = text.str.lower()
    return lowered.isin(["", "nan", "-nan", "+nan", "na", "n/a", "null", "none"]).to_numpy()


def _thousands_pattern(separator: str, decimal: str) -> str:
    return rf"[+-]?\d{{1,3}}(?:{re.escape(separator)}\d{{3}})+(?:{re.escape(decimal)}\d*)?"


def _reject_decimal_commas(
    source: SourceConfig, column: str, failed: pd.Series, path: Path, rows: np.ndarray
) -> None:
    """Raise when values use a decimal comma that the config does not declare.

    A comma followed by other than three digits cannot be a thousands separator, so
    ``"61,5"`` is a decimal comma; quarantining it would drop every such value.
    """
    if source.decimal == ",":
        return
    text = failed.astype(str).str.strip()
    decimal_comma = text.str.fullmatch(r"[+-]?\d+,(?:\d{1,2}|\d{4,})").to_numpy()
    if decimal_comma.any():
        first = int(np.flatnonzero(decimal_comma)[0])
        raise InputError(
            f"value {text.iloc[first]!r} uses a decimal comma; expected a '.' decimal mark, "
            'or set decimal = "," in the source config',
            path=str(path),
            row=int(rows[first]),
            column=column,
        )


def _reject_undeclared_separators(
    source: SourceConfig, column: str, failed: pd.Series, path: Path, rows: np.ndarray
) -> None:
    """Raise when values failed only because of thousands separators the config lacks.

    Coercing them to NaN would drop exactly the large values (1,000 and up), which are
    often the burst that matters.
    """
    text = failed.astype(str).str.strip()
    for separator in THOUSANDS_CANDIDATES:
        if separator in (source.decimal, source.thousands):
            continue
        grouped = text.str.fullmatch(_thousands_pattern(separator, source.decimal))
        if grouped.any():
            first = int(np.flatnonzero(grouped.to_numpy())[0])
            example = text.iloc[first]
            hint = ""
            if separator == ",":
                hint = ' (or decimal = "," if the comma is the decimal mark)'
            raise InputError(
                f"{int(grouped.sum())} values use {separator!r} as a thousands separator "
                f"(for example {example!r}); set thousands = {json.dumps(separator)} in the "
                f"source config{hint}",
                path=str(path),
                row=int(rows[first]),
                column=column,
            )


def _assemble(
    source: SourceConfig,
    path: Path,
    timestamps: pd.Series,
    ts_reasons: np.ndarray,
    raw_times: pd.Series,
    components: np.ndarray,
    value_columns: dict[str, pd.Series],
    source_rows: np.ndarray,
    row_metrics: np.ndarray | None = None,
) -> RawTelemetry:
    """Melt per-row times and per-metric value columns into long rows, row-major."""
    names = list(value_columns)
    n_rows, n_metrics = len(timestamps), len(names)
    parsed = [
        _parse_values(source, name, value_columns[name], path, source_rows) for name in names
    ]

    # Cell (i, j) is file row i, metric j; ravel() walks them in file order.
    values = np.column_stack([p[0] for p in parsed]).ravel()
    cell_reasons = np.column_stack([p[1] for p in parsed])
    has_ts_reason = ~_unset(ts_reasons)
    cell_reasons[has_ts_reason, :] = ts_reasons[has_ts_reason, None]
    cell_reasons = cell_reasons.ravel()

    if row_metrics is None:
        metrics = np.tile(np.asarray(names, dtype=object), n_rows)
    else:
        metrics = np.repeat(row_metrics, n_metrics)
    # Repeat plain datetime64 values: a tz-aware to_numpy() would build Timestamp objects.
    utc_values = timestamps.astype("datetime64[ns, UTC]").dt.tz_localize(None).to_numpy()
    long = pd.DataFrame(
        {
            TIMESTAMP: np.repeat(utc_values, n_metrics),
            COMPONENT: np.repeat(components, n_metrics),
            METRIC: metrics,
            VALUE: values,
            SOURCE_ROW: np.repeat(source_rows, n_metrics),
        }
    )
    long[TIMESTAMP] = long[TIMESTAMP].astype("datetime64[ns]").dt.tz_localize("UTC")
    long[COMPONENT] = long[COMPONENT].astype(object)
    long[METRIC] = long[METRIC].astype(object)

    rejected_mask = ~_unset(cell_reasons)
    rows = long.loc[~rejected_mask].reset_index(drop=True)
    rejected = long.loc[rejected_mask].reset_index(drop=True)
    rejected[REASON] = cell_reasons[rejected_mask]
    rejected[RAW_VALUE] = _raw_text(
        np.flatnonzero(rejected_mask), n_metrics, has_ts_reason, raw_times, value_columns
    )
    return RawTelemetry(rows=rows, rejected=rejected, rows_read=n_rows * n_metrics)


def _raw_text(
    cells: np.ndarray,
    n_metrics: int,
    has_ts_reason: np.ndarray,
    raw_times: pd.Series,
    value_columns: dict[str, pd.Series],
) -> np.ndarray:
    """Return the input text of each rejected cell: the timestamp if that was the fault."""
    out = np.empty(len(cells), dtype=object)
    row_of_cell, column_of_cell = np.divmod(cells, n_metrics)
    time_fault = has_ts_reason[row_of_cell]
    out[time_fault] = raw_times.iloc[row_of_cell[time_fault]].map(str).to_numpy(dtype=object)
    for j, series in enumerate(value_columns.values()):
        selected = ~time_fault & (column_of_cell == j)
        if selected.any():
            out[selected] = series.iloc[row_of_cell[selected]].map(str).to_numpy(dtype=object)
    return out
