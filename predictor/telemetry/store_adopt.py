"""Decide whether a clean long Parquet file can become a store part file as it is.

A part file that the store writes contains one UTC day of rows with the columns ``component``,
``metric``, ``timestamp`` and ``value``, grouped by component in name order, without
two rows of the same key. An input file that already has that shape need not be
rewritten: :meth:`predictor.telemetry.store.TelemetryStore.adopt` copies its bytes into
the store. :func:`adoptable_file` checks the shape in one pass over the dictionary codes
and computes the per-component summary that the commit marker records.

A file is adoptable when all of these hold; otherwise the store writes its rows as
usual:

- its Arrow schema has exactly the four columns, with types that readers cast to those
  of a written part file: a timestamp in zone ``UTC`` of any unit, string, large string
  or dictionary-of-string names, and ``double`` values;
- no row group has more than :data:`MAX_ADOPTED_ROW_GROUP_ROWS` rows, so a read of a
  few components still skips most of the file by row-group statistics;
- all timestamps fall on one UTC day;
- components form contiguous runs in ascending name order, and within each run either
  (metric, timestamp) or (timestamp, metric) strictly increases, which also proves that
  no key repeats.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from predictor.telemetry.arrow_rows import NS_PER_DAY, day_label, dictionary_codes
from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP, VALUE

logger = logging.getLogger(__name__)

# pyarrow's default maximum row group size (pyarrow 15 and later), which pandas'
# ``to_parquet`` also uses. Larger row groups fall back to a rewrite in groups of
# ``ROW_GROUP_ROWS`` rows, so that reads of one component keep skipping row groups.
MAX_ADOPTED_ROW_GROUP_ROWS = 1_048_576
TIME_TYPE = pa.timestamp("ns", tz="UTC")
PART_COLUMNS = (COMPONENT, METRIC, TIMESTAMP, VALUE)
#: Orders of the rows within a component run that :func:`adoptable_file` accepts.
TIME_MAJOR = "timestamp, metric"
METRIC_MAJOR = "metric, timestamp"
ORDER_CHECK_BLOCK = 65_536


class AdoptableFile:
    """A clean long Parquet file of one UTC day with the columns of a part file.

    Whether its rows are in store order is checked by :attr:`summary`, which the store
    computes while it writes the bytes.

    Parameters
    ----------
    content : pyarrow.Buffer
        The file's bytes.
    rows : pyarrow.Table
        The rows read from ``content``, as :func:`adoptable_file` takes them.
    day : int
        The UTC day number (days since 1970-01-01) of all its rows.
    first : int
        The earliest timestamp in nanoseconds since the epoch.
    """

    def __init__(self, content: pa.Buffer, rows: pa.Table, day: int, first: int) -> None:
        self.content = content
        self.rows = rows
        self.day = day
        self.first = first

    @functools.cached_property
    def summary(self) -> pa.Table | None:
        """The summary that the commit records, or None when rows are not in store order.

        One row per component in name order: ``component``, ``first_timestamp``,
        ``last_timestamp``, ``rows``.
        """
        nanoseconds = _nanoseconds(self.rows.column(TIMESTAMP))
        component_codes, component_names = dictionary_codes(self.rows.column(COMPONENT))
        metric_codes, metric_names = dictionary_codes(self.rows.column(METRIC))
        components = _ranked(component_codes, component_names)
        metrics = _ranked(metric_codes, metric_names)
        ordered = _store_order(components, metrics, nanoseconds, self.first)
        if ordered is None:
            logger.debug("long file of %d rows is rewritten: rows are not in store order",
                         len(nanoseconds))
            return None

        order, starts = ordered
        ends = np.append(starts[1:], len(nanoseconds))
        if order == TIME_MAJOR:
            # Timestamps never decrease within a run, so its ends hold its range.
            first_times, last_times = nanoseconds[starts], nanoseconds[ends - 1]
        else:
            first_times = np.minimum.reduceat(nanoseconds, starts)
            last_times = np.maximum.reduceat(nanoseconds, starts)
        names = component_names.take(pa.array(component_codes[starts])).cast(pa.string())
        return pa.table(
            {
                COMPONENT: names,
                "first_timestamp": pa.array(first_times, TIME_TYPE),
                "last_timestamp": pa.array(last_times, TIME_TYPE),
                "rows": pa.array(ends - starts, pa.int64()),
            }
        )


def adoptable_file(
    content: pa.Buffer, file_schema: pa.Schema, metadata: pq.FileMetaData, rows: pa.Table
) -> AdoptableFile | None:
    """Return the file as an :class:`AdoptableFile`, or None when it must be rewritten.

    Checks the columns, the row groups and the day; :attr:`AdoptableFile.summary`
    checks the order of the rows.

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

    first, last = (int(bound.value) for bound in pc.min_max(rows.column(TIMESTAMP)).values())
    if first // NS_PER_DAY != last // NS_PER_DAY:
        logger.debug("long file of %d rows is rewritten: it spans UTC days %s to %s",
                     rows.num_rows, day_label(first // NS_PER_DAY), day_label(last // NS_PER_DAY))
        return None
    return AdoptableFile(content, rows, first // NS_PER_DAY, first)


def _layout_mismatch(file_schema: pa.Schema, metadata: pq.FileMetaData, n_rows: int) -> str | None:
    """Return why the file's columns or row groups differ from a part file's, or None."""
    if n_rows == 0:
        return "it has no rows"
    if sorted(file_schema.names) != sorted(PART_COLUMNS):
        return f"columns {file_schema.names} are not exactly {sorted(PART_COLUMNS)}"
    types = {field.name: field.type for field in file_schema}
    if not pa.types.is_timestamp(types[TIMESTAMP]) or types[TIMESTAMP].tz != "UTC":
        return f"column 'timestamp' has type {types[TIMESTAMP]}, not a timestamp in UTC"
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
    return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)


def _ranked(codes: np.ndarray, dictionary: pa.Array) -> np.ndarray:
    """Return each row's rank in name order of its dictionary value; equal names share one.

    A dictionary already in strictly ascending order (pandas categories are) ranks as
    its codes, which skips a gather over every row.
    """
    ranks = pc.rank(dictionary, sort_keys="ascending", tiebreaker="dense").to_numpy()
    ranks = ranks.astype(codes.dtype) - 1
    if np.array_equal(ranks, np.arange(len(ranks))):
        return codes
    return ranks[codes]


def _store_order(
    components: np.ndarray, metrics: np.ndarray, nanoseconds: np.ndarray, first: int
) -> tuple[str, np.ndarray] | None:
    """Return how rows are ordered within component runs and where each run starts.

    ``components`` and ``metrics`` are name ranks; ``nanoseconds`` lie on one UTC day
    from ``first`` on. Components must not decrease, and within a run either
    (metric, timestamp) or (timestamp, metric) must strictly increase. Each pair is
    checked as one integer key, ``metric * span + offset`` or
    ``offset * n_metrics + metric`` with ``offset = nanoseconds - first``, which fits in
    int64 while ``n_metrics * NS_PER_DAY`` does; returns None otherwise.
    """
    n_metrics = int(metrics.max()) + 1
    span = int(nanoseconds.max()) - first + 1
    if n_metrics * NS_PER_DAY >= np.iinfo(np.int64).max:
        return None
    for order in (TIME_MAJOR, METRIC_MAJOR):
        starts = [np.zeros(1, dtype=np.int64)]
        for block in _overlapping_blocks(len(nanoseconds)):
            component_steps = np.diff(components[block])
            offsets = nanoseconds[block] - first
            if order == TIME_MAJOR:
                key = offsets * n_metrics
                key += metrics[block]
            else:
                key = metrics[block].astype(np.int64) * span
                key += offsets
            new_run = component_steps != 0
            increasing = np.diff(key) > 0
            increasing |= new_run
            if (component_steps < 0).any() or not increasing.all():
                break
            starts.append(np.flatnonzero(new_run) + (block.start + 1))
        else:
            return order, np.concatenate(starts)
    return None


def _overlapping_blocks(n_rows: int) -> Iterator[slice]:
    """Yield slices of ORDER_CHECK_BLOCK rows that share their last row with the next.

    Checking neighbouring rows block by block keeps the temporary arrays in the CPU
    cache, which halves the time of one pass over the whole arrays.
    """
    for start in range(0, max(n_rows - 1, 1), ORDER_CHECK_BLOCK):
        yield slice(start, start + ORDER_CHECK_BLOCK + 1)
