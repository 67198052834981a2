"""Decide whether a clean long Parquet file can become a store part file as it is.

A part file the store writes holds one UTC day of rows with the columns ``component``,
``metric``, ``timestamp`` and ``value``, grouped by component in name order, without
two rows of the same key. An input file that already has that shape need not be
rewritten: :meth:`predictor.telemetry.store.TelemetryStore.adopt` copies its bytes into
the store. :func:`adoptable_file` checks the shape in one pass over the dictionary codes
and computes the per-component summary that the commit marker records.

A file is adoptable when all of these hold; otherwise the store writes its rows as
usual:

- its Arrow schema has exactly the four columns, with the types of a written part file
  (``timestamp[ns, tz=UTC]``, string or dictionary-of-string names, ``double`` values);
- no row group has more than :data:`MAX_ADOPTED_ROW_GROUP_ROWS` rows, so a read of a
  few components still skips most of the file by row-group statistics;
- all timestamps fall on one UTC day;
- components form contiguous runs in ascending name order, and within each run either
  (metric, timestamp) or (timestamp, metric) strictly increases, which also proves that
  no key repeats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from predictor.telemetry.arrow_rows import dictionary_codes, utc_days
from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP, VALUE

logger = logging.getLogger(__name__)

# pyarrow's default maximum row group size (pyarrow 15 and later), which pandas'
# ``to_parquet`` also uses. Larger row groups fall back to a rewrite in groups of
# ``ROW_GROUP_ROWS`` rows, so that reads of one component keep skipping row groups.
MAX_ADOPTED_ROW_GROUP_ROWS = 1_048_576
TIME_TYPE = pa.timestamp("ns", tz="UTC")
PART_COLUMNS = (COMPONENT, METRIC, TIMESTAMP, VALUE)


@dataclass
class AdoptableFile:
    """A clean long Parquet file in store order, with the summary its commit records.

    Attributes
    ----------
    content : pyarrow.Buffer
        The file's bytes.
    day : int
        The UTC day number (days since 1970-01-01) of all its rows.
    summary : pyarrow.Table
        One row per component in name order: ``component``, ``first_timestamp``,
        ``last_timestamp``, ``rows``.
    """

    content: pa.Buffer
    day: int
    summary: pa.Table


def adoptable_file(
    content: pa.Buffer, file_schema: pa.Schema, metadata: pq.FileMetaData, rows: pa.Table
) -> AdoptableFile | None:
    """Return the file as an :class:`AdoptableFile`, or None when it must be rewritten.

    Parameters
    ----------
    content : pyarrow.Buffer
        The bytes of the file that ``rows`` was read from.
    file_schema : pyarrow.Schema
        The Arrow schema of the file as read, with ``component`` and ``metric`` read as
        dictionaries.
    metadata : pyarrow.parquet.FileMetaData
        The file's footer.
    rows : pyarrow.Table
        The file's rows after validation: ``timestamp`` (``timestamp[ns, UTC]``),
        ``component`` and ``metric`` (dictionary columns whose chunks share one
        dictionary), without nulls.

    Returns
    -------
    AdoptableFile or None
    """
    reason = _layout_mismatch(file_schema, metadata, rows.num_rows)
    if reason is not None:
        logger.debug("long file of %d rows is rewritten: %s", rows.num_rows, reason)
        return None

    nanoseconds = _nanoseconds(rows.column(TIMESTAMP))
    first_day, last_day = utc_days(pa.array([nanoseconds.min(), nanoseconds.max()], TIME_TYPE))
    if first_day != last_day:
        logger.debug("long file of %d rows is rewritten: it spans UTC days %d to %d",
                     rows.num_rows, first_day, last_day)
        return None

    component_codes, component_names = dictionary_codes(rows.column(COMPONENT))
    components = _name_ranks(component_names)[component_codes]
    metric_codes, metric_names = dictionary_codes(rows.column(METRIC))
    metric_ranks = _name_ranks(metric_names)[metric_codes]
    starts = _run_starts(components, metric_ranks, nanoseconds)
    if starts is None:
        logger.debug("long file of %d rows is rewritten: rows are not in store order",
                     rows.num_rows)
        return None

    summary = pa.table(
        {
            COMPONENT: component_names.take(pa.array(component_codes[starts])).cast(pa.string()),
            "first_timestamp": pa.array(np.minimum.reduceat(nanoseconds, starts), TIME_TYPE),
            "last_timestamp": pa.array(np.maximum.reduceat(nanoseconds, starts), TIME_TYPE),
            "rows": pa.array(np.diff(starts, append=len(nanoseconds)), pa.int64()),
        }
    )
    return AdoptableFile(content=content, day=int(first_day), summary=summary)


def _layout_mismatch(file_schema: pa.Schema, metadata: pq.FileMetaData, n_rows: int) -> str | None:
    """Return why the file's columns or row groups differ from a part file's, or None."""
    if n_rows == 0:
        return "it has no rows"
    if sorted(file_schema.names) != sorted(PART_COLUMNS):
        return f"columns {file_schema.names} are not exactly {sorted(PART_COLUMNS)}"
    types = {field.name: field.type for field in file_schema}
    if types[TIMESTAMP] != TIME_TYPE:
        return f"column 'timestamp' has type {types[TIMESTAMP]}, not {TIME_TYPE}"
    if types[VALUE] != pa.float64():
        return f"column 'value' has type {types[VALUE]}, not double"
    for name in (COMPONENT, METRIC):
        if not (pa.types.is_dictionary(types[name]) and types[name].value_type == pa.string()):
            return f"column {name!r} has type {types[name]}, not string"
    largest = max(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
    if largest > MAX_ADOPTED_ROW_GROUP_ROWS:
        return f"a row group has {largest} rows, more than {MAX_ADOPTED_ROW_GROUP_ROWS}"
    return None


def _nanoseconds(times: pa.ChunkedArray) -> np.ndarray:
    chunks = [chunk.cast(pa.int64()).to_numpy() for chunk in times.chunks]
    return np.concatenate(chunks)


def _name_ranks(dictionary: pa.Array) -> np.ndarray:
    """Return the rank of each dictionary value in name order; equal values share a rank."""
    ranks = pc.rank(dictionary, sort_keys="ascending", tiebreaker="dense")
    return ranks.to_numpy().astype(np.int64) - 1


def _run_starts(
    components: np.ndarray, metrics: np.ndarray, nanoseconds: np.ndarray
) -> np.ndarray | None:
    """Return where each component's run starts, or None if the rows are not in store order.

    ``components`` and ``metrics`` are name ranks. Within a run the rows must strictly
    increase by (metric, timestamp) or by (timestamp, metric).
    """
    component_steps = np.diff(components)
    if (component_steps < 0).any():
        return None
    within = component_steps == 0
    metric_steps = np.diff(metrics)
    time_steps = np.diff(nanoseconds)
    for major, minor in ((metric_steps, time_steps), (time_steps, metric_steps)):
        increasing = (major > 0) | ((major == 0) & (minor > 0))
        if (increasing | ~within).all():
            return np.flatnonzero(np.concatenate(([True], ~within)))
    return None
