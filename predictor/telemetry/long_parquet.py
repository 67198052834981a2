"""Fast path for long-format Parquet files: read, check and store them in Arrow.

The general readers convert every row to pandas and check it there. A long Parquet file
whose columns already have the stored types (a tz-aware timestamp, string component and
metric names, numeric values) and whose rows all pass validation needs none of that:
:func:`read_clean_long_parquet` reads it with pyarrow, runs the same checks as
:func:`predictor.telemetry.readers.read_source` and
:func:`predictor.telemetry.validate.validate` on Arrow arrays, and returns the table.
When any row would be rejected, or the file needs a conversion only the general reader
makes (text times, a time zone, a component from the config), it returns None and the
caller takes the general path, which produces the same errors and quarantine rows as
before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from predictor.config import Settings, SourceConfig
from predictor.telemetry.arrow_rows import dictionary_codes, used_values
from predictor.telemetry.file_bytes import read_block_aligned
from predictor.telemetry.readers import (
    EARLIEST_PLAUSIBLE,
    MAX_FUTURE,
    PARQUET_SUFFIXES,
    SOURCE_ROW,
)
from predictor.telemetry.schema import (
    COMPONENT,
    METRIC,
    NAME_PATTERN,
    TIMESTAMP,
    VALUE,
    is_valid_name,
)

logger = logging.getLogger(__name__)


@dataclass
class CleanLongFile:
    """A long Parquet file whose rows all passed validation, as read once from disk.

    Attributes
    ----------
    rows : pyarrow.Table
        The rows as :func:`read_clean_long_parquet` returns them but without
        ``source_row``; each column except ``value`` is in one chunk.
    content : pyarrow.Buffer
        The file's bytes; ``rows`` was parsed from them, so a store can keep these
        bytes as a part file (:mod:`predictor.telemetry.store_adopt`).
    file_schema : pyarrow.Schema
        The Arrow schema of the file as read, before any cast.
    metadata : pyarrow.parquet.FileMetaData
        The file's Parquet footer (row groups).
    """

    rows: pa.Table
    content: pa.Buffer
    file_schema: pa.Schema
    metadata: pq.FileMetaData

    def numbered_rows(self) -> pa.Table:
        """Return :attr:`rows` with ``source_row``, the 1-based row number in the file."""
        numbers = np.arange(1, self.rows.num_rows + 1, dtype=np.int64)
        return self.rows.append_column(SOURCE_ROW, pa.array(numbers))

    def components(self) -> list[str]:
        """Return the distinct components of the rows, sorted."""
        return sorted(used_values(*dictionary_codes(self.rows.column(COMPONENT))))


def read_clean_long_parquet(source: SourceConfig, settings: Settings) -> pa.Table | None:
    """Read a long Parquet source in Arrow when every row is valid; else return None.

    Parameters
    ----------
    source : SourceConfig
        The source; only ``format = "long"`` files ending in ``.parquet`` or ``.pq``
        without ``component``, ``component_column`` or ``epoch_unit`` qualify.
    settings : Settings
        The declared components and metrics that validation checks.

    Returns
    -------
    pyarrow.Table or None
        Columns ``timestamp`` (``timestamp[ns, UTC]``), ``component``, ``metric``
        (dictionary-encoded strings), ``value`` (``double``) and ``source_row`` (the
        1-based row number), in file order; None when the general path must read the
        file.
    """
    clean = read_clean_long_file(source, settings)
    return None if clean is None else clean.numbered_rows()


def read_clean_long_file(source: SourceConfig, settings: Settings) -> CleanLongFile | None:
    """Read a long Parquet source once, keeping its bytes, when every row is valid.

    Takes the same arguments and applies the same checks as
    :func:`read_clean_long_parquet`.

    Returns
    -------
    CleanLongFile or None
        None when the general path must read the file.
    """
    if not _qualifies(source):
        return None
    path = Path(str(source.path))
    try:
        # One read of the bytes: the rows checked are exactly the bytes a store may keep.
        content = read_block_aligned(path)
        table = pq.read_table(
            pa.BufferReader(content), read_dictionary=[COMPONENT, METRIC]
        ).unify_dictionaries()
        metadata = pq.read_metadata(pa.BufferReader(content))
    except (pa.ArrowInvalid, OSError, KeyError):
        return None
    columns = _typed_columns(table, source.timestamp_column)
    if columns is None or not _all_valid(columns, settings):
        return None

    rows = pa.table(
        {
            TIMESTAMP: columns[TIMESTAMP],
            COMPONENT: columns[COMPONENT],
            METRIC: columns[METRIC],
            VALUE: columns[VALUE],
        }
    )
    logger.debug("source %s: read %d valid rows from %s with pyarrow", source.name,
                 rows.num_rows, path)
    return CleanLongFile(rows, content, table.schema, metadata)


def _qualifies(source: SourceConfig) -> bool:
    return (
        source.format == "long"
        and source.path is not None
        and Path(str(source.path)).suffix.lower() in PARQUET_SUFFIXES
        and source.component is None
        and source.component_column is None
        and source.epoch_unit is None
    )


def _typed_columns(table: pa.Table, timestamp_column: str) -> dict[str, pa.ChunkedArray] | None:
    """Return the four long columns in stored types, or None if any needs the general path."""
    names = {TIMESTAMP: timestamp_column, COMPONENT: COMPONENT, METRIC: METRIC, VALUE: VALUE}
    if any(len(table.schema.get_all_field_indices(name)) != 1 for name in names.values()):
        return None
    times = table.column(timestamp_column)
    if not pa.types.is_timestamp(times.type) or times.type.tz is None:
        return None
    values = table.column(VALUE)
    if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
        return None
    # One chunk for the key columns makes the numpy views of later checks free of copies.
    columns = {
        TIMESTAMP: _one_chunk(times.cast(pa.timestamp("ns", tz="UTC"))),
        VALUE: values.cast(pa.float64()),
    }
    for name in (COMPONENT, METRIC):
        column = table.column(name)
        if not pa.types.is_dictionary(column.type) or not pa.types.is_string(
            column.type.value_type
        ):
            return None
        columns[name] = _one_chunk(column)
    return columns


def _one_chunk(column: pa.ChunkedArray) -> pa.ChunkedArray:
    return column if column.num_chunks <= 1 else pa.chunked_array([column.combine_chunks()])


def _all_valid(columns: dict[str, pa.ChunkedArray], settings: Settings) -> bool:
    """Return whether no row would be rejected by the reader or by validation.

    The reader and validation reject a row for a null, a non-finite value, an
    implausible timestamp, an invalid name or an undeclared component or metric.
    """
    times, values = columns[TIMESTAMP], columns[VALUE]
    if times.null_count or values.null_count:
        return False
    if columns[COMPONENT].null_count or columns[METRIC].null_count:
        return False
    if not pc.all(pc.is_finite(values)).as_py():
        return False
    if len(times):
        earliest, latest = pc.min_max(times).values()
        if earliest.as_py() < EARLIEST_PLAUSIBLE:
            return False
        if latest.as_py() > pd.Timestamp.now(tz="UTC") + MAX_FUTURE:
            return False
    component_codes, component_names = dictionary_codes(columns[COMPONENT])
    metric_codes, metric_names = dictionary_codes(columns[METRIC])
    if not (_valid_names(component_codes, component_names)
            and _valid_names(metric_codes, metric_names)):
        return False
    return _declared(component_codes, component_names, metric_codes, metric_names, settings)


def _valid_names(codes: np.ndarray, dictionary: pa.Array) -> bool:
    """Return whether every name that a row uses is valid.

    A dictionary may contain names that no row uses. Those are only looked at when the
    dictionary contains an invalid name.
    """
    # RE2 accepts no name that NAME_PATTERN rejects. It does reject a name that ends in a
    # newline, which Python's "$" accepts, so a rejection is checked again in Python.
    if len(dictionary) == 0 or pc.all(
        pc.match_substring_regex(dictionary, NAME_PATTERN.pattern)
    ).as_py():
        return True
    return all(map(is_valid_name, used_values(codes, dictionary)))


def _declared(
    component_codes: np.ndarray,
    component_names: pa.Array,
    metric_codes: np.ndarray,
    metric_names: pa.Array,
    settings: Settings,
) -> bool:
    """Return whether every component is declared and uses only its listed metrics."""
    if not settings.components:
        return True
    declared = {component.name: component for component in settings.components}
    components = used_values(component_codes, component_names)
    if any(name not in declared for name in components):
        return False
    restricted = {name for name in components if declared[name].metrics}
    if not restricted:
        return True
    pairs = np.unique(component_codes.astype(np.int64) * len(metric_names) + metric_codes)
    component_of_pair = component_names.take(pa.array(pairs // len(metric_names))).to_pylist()
    metric_of_pair = metric_names.take(pa.array(pairs % len(metric_names))).to_pylist()
    for name, metric in zip(component_of_pair, metric_of_pair, strict=True):
        if name in restricted and metric not in declared[name].metrics:
            return False
    return True
