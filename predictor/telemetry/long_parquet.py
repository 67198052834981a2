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
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from predictor.config import Settings, SourceConfig
from predictor.telemetry.readers import EARLIEST_PLAUSIBLE, MAX_FUTURE, PARQUET_SUFFIXES, SOURCE_ROW
from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP, VALUE, is_valid_name

logger = logging.getLogger(__name__)


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
    if not _qualifies(source):
        return None
    path = Path(str(source.path))
    try:
        table = pq.read_table(path, read_dictionary=[COMPONENT, METRIC])
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
            SOURCE_ROW: pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64)),
        }
    )
    logger.debug("source %s: read %d valid rows from %s with pyarrow", source.name,
                 rows.num_rows, path)
    return rows


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
    columns = {
        TIMESTAMP: times.cast(pa.timestamp("ns", tz="UTC")),
        VALUE: values.cast(pa.float64()),
    }
    for name in (COMPONENT, METRIC):
        column = table.column(name)
        if not pa.types.is_dictionary(column.type) or not pa.types.is_string(
            column.type.value_type
        ):
            return None
        columns[name] = column
    return columns


def _all_valid(columns: dict[str, pa.ChunkedArray], settings: Settings) -> bool:
    """Return whether no row would be rejected by the reader or by validation."""
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
    components = _distinct(columns[COMPONENT])
    metrics = _distinct(columns[METRIC])
    if not all(map(is_valid_name, components)) or not all(map(is_valid_name, metrics)):
        return False
    return _declared(columns, components, settings)


def _distinct(column: pa.ChunkedArray) -> list[str]:
    return pc.unique(column.cast(column.type.value_type)).to_pylist() if len(column) else []


def _declared(
    columns: dict[str, pa.ChunkedArray], components: list[str], settings: Settings
) -> bool:
    """Return whether every component is declared and uses only its listed metrics."""
    if not settings.components:
        return True
    declared = {component.name: component for component in settings.components}
    if any(name not in declared for name in components):
        return False
    restricted = {name for name in components if declared[name].metrics}
    if not restricted:
        return True
    pairs = pa.table(
        {COMPONENT: columns[COMPONENT].cast(pa.string()), METRIC: columns[METRIC].cast(pa.string())}
    ).group_by([COMPONENT, METRIC]).aggregate([])
    for name, metric in zip(pairs.column(COMPONENT).to_pylist(),
                            pairs.column(METRIC).to_pylist(), strict=True):
        if name in restricted and metric not in declared[name].metrics:
            return False
    return True
