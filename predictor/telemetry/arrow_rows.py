"""Arrow tables of long telemetry rows: the row schema, key order and per-day summaries.

The store keeps rows sorted by their key (component, metric, timestamp). Sorting strings
is slow in Arrow, so :func:`key_order` sorts integer ranks: each column is
dictionary-encoded, its distinct values are ranked, and the ranks of a row form one
integer key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP, VALUE

NS_PER_DAY = 86_400 * 10**9
ROW_SCHEMA = pa.schema(
    [
        pa.field(TIMESTAMP, pa.timestamp("ns", tz="UTC")),
        pa.field(COMPONENT, pa.string()),
        pa.field(METRIC, pa.string()),
        pa.field(VALUE, pa.float64()),
    ]
)
# A dense key space up to this many times the row count is sorted by scattering rows
# into a table indexed by key, which is linear; larger spaces use np.lexsort.
DENSE_KEY_FACTOR = 8


@dataclass
class KeyOrder:
    """The order of a table's rows by (component, metric, timestamp).

    Attributes
    ----------
    order : numpy.ndarray
        Row positions in key order; rows with the same key keep their input order.
    repeated : numpy.ndarray of bool
        In key order, whether a row has the same key as the row before it.
    """

    order: np.ndarray
    repeated: np.ndarray

    def is_identity(self) -> bool:
        """Return whether the rows are already in key order."""
        return bool(np.array_equal(self.order, np.arange(len(self.order))))


def as_row_table(table: pa.Table) -> pa.Table:
    """Return the long columns of ``table`` cast to :data:`ROW_SCHEMA`, one chunk each.

    Dictionary-encoded component and metric columns stay dictionary-encoded.
    """
    columns = []
    for field in ROW_SCHEMA:
        column = table.column(field.name)
        if not (pa.types.is_dictionary(column.type) and field.type == pa.string()):
            column = column.cast(field.type)
        columns.append(column.combine_chunks() if column.num_chunks != 1 else column.chunk(0))
    return pa.table(dict(zip(ROW_SCHEMA.names, columns, strict=True)))


def dense_ranks(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, int]:
    """Return each value's rank among the column's distinct values, and their number.

    Equal values get the same rank; ranks follow the ascending order of the values.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    encoded = column if pa.types.is_dictionary(column.type) else pc.dictionary_encode(column)
    if len(encoded) == 0:
        return np.zeros(0, dtype=np.int64), 0
    # A dictionary may repeat a value (for example after concatenating chunks), so the
    # ranks are dense over values, not over dictionary positions.
    value_ranks = pc.rank(encoded.dictionary, sort_keys="ascending", tiebreaker="dense")
    value_ranks = value_ranks.to_numpy().astype(np.int64) - 1
    ranks = value_ranks[encoded.indices.to_numpy(zero_copy_only=False)]
    return ranks, int(value_ranks.max()) + 1


def dictionary_codes(column: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Return the indices of a dictionary column whose chunks share one dictionary.

    Parameters
    ----------
    column : pyarrow.ChunkedArray
        A dictionary-encoded column after :meth:`pyarrow.Table.unify_dictionaries`.

    Returns
    -------
    codes : numpy.ndarray
        Each row's position in ``dictionary``.
    dictionary : pyarrow.Array
        The shared dictionary; it may hold values that no row uses.
    """
    if column.num_chunks == 0:
        return np.zeros(0, dtype=np.int32), pa.array([], column.type.value_type)
    dictionary = column.chunk(0).dictionary
    if any(not chunk.dictionary.equals(dictionary) for chunk in column.chunks[1:]):
        raise ValueError(
            f"column of type {column.type}: chunks have different dictionaries; "
            "unify them first"
        )
    codes = [chunk.indices.to_numpy(zero_copy_only=False) for chunk in column.chunks]
    return codes[0] if len(codes) == 1 else np.concatenate(codes), dictionary


def used_values(codes: np.ndarray, dictionary: pa.Array) -> list:
    """Return the distinct dictionary values that ``codes`` refer to, in dictionary order."""
    used = np.zeros(len(dictionary), dtype=bool)
    used[codes] = True
    return list(dict.fromkeys(dictionary.filter(pa.array(used)).to_pylist()))


def key_order(table: pa.Table) -> KeyOrder:
    """Compute the stable order of ``table``'s rows by component, metric and timestamp.

    Parameters
    ----------
    table : pyarrow.Table
        Rows without nulls in ``component``, ``metric`` and ``timestamp``.

    Returns
    -------
    KeyOrder
    """
    n_rows = table.num_rows
    if n_rows == 0:
        return KeyOrder(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool))
    components, n_components = dense_ranks(table.column(COMPONENT))
    metrics, n_metrics = dense_ranks(table.column(METRIC))
    times, n_times = dense_ranks(table.column(TIMESTAMP))

    n_keys = n_components * n_metrics * n_times
    if n_keys <= DENSE_KEY_FACTOR * n_rows:
        keys = (components * n_metrics + metrics) * n_times + times
        order = _scatter_order(keys, n_keys)
        sorted_keys = keys[order]
    else:
        order = np.lexsort((times, metrics, components))
        sorted_keys = np.stack([components[order], metrics[order], times[order]])
    repeated = np.zeros(n_rows, dtype=bool)
    if sorted_keys.ndim == 1:
        repeated[1:] = sorted_keys[1:] == sorted_keys[:-1]
    else:
        repeated[1:] = (sorted_keys[:, 1:] == sorted_keys[:, :-1]).all(axis=0)
    return KeyOrder(order=order, repeated=repeated)


def _scatter_order(keys: np.ndarray, n_keys: int) -> np.ndarray:
    """Sort distinct integer keys in linear time; fall back to a stable sort on repeats."""
    slots = np.full(n_keys, -1, dtype=np.int64)
    slots[keys] = np.arange(len(keys), dtype=np.int64)
    order = slots[slots >= 0]
    if len(order) == len(keys):
        return order
    return np.argsort(keys, kind="stable")


def utc_days(timestamps: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Return the UTC day number (days since 1970-01-01) of each timestamp."""
    nanoseconds = pc.cast(timestamps, pa.int64()).to_numpy(zero_copy_only=False)
    return np.floor_divide(nanoseconds, NS_PER_DAY)


def day_label(day: int) -> str:
    """Return the ``YYYY-MM-DD`` label of a UTC day number."""
    return str(np.datetime64(int(day), "D"))


def summarise_sorted(table: pa.Table) -> pa.Table:
    """Summarise rows in key order per component: first and last timestamp and row count.

    Parameters
    ----------
    table : pyarrow.Table
        Rows sorted by component, metric and timestamp, as :func:`key_order` orders them.

    Returns
    -------
    pyarrow.Table
        Columns ``component``, ``first_timestamp``, ``last_timestamp``, ``rows``.
    """
    components = table.column(COMPONENT)
    ranks, _ = dense_ranks(components)
    starts = np.flatnonzero(np.diff(ranks, prepend=-1))
    nanoseconds = pc.cast(table.column(TIMESTAMP), pa.int64()).to_numpy(zero_copy_only=False)
    ends = np.append(starts[1:], len(ranks))
    names = components.take(pa.array(starts)).cast(pa.string())
    return pa.table(
        {
            COMPONENT: names,
            "first_timestamp": pa.array(
                np.minimum.reduceat(nanoseconds, starts), pa.timestamp("ns", tz="UTC")
            ),
            "last_timestamp": pa.array(
                np.maximum.reduceat(nanoseconds, starts), pa.timestamp("ns", tz="UTC")
            ),
            "rows": pa.array(ends - starts, pa.int64()),
        }
    )
