"""Merge the part files of a UTC day, or of an hour of the running day, into one file.

Every append adds a part file per UTC day and a commit marker. A store that takes an
append every 5 minutes gains 288 files and 288 markers a day, and every process that
opens the store reads all markers. Compaction writes the rows of a completed day's part
files, or of a completed hour's within the running day (:func:`plan_merges`), into one
new part file. It commits that file with a marker that lists the files it replaces, in
the marker's Parquet metadata under :data:`REPLACES_KEY`. From that commit on,
readers ignore the summary rows of replaced files. The replaced files, and the markers
whose files are all replaced, are deleted after the commit. A crash in between leaves
them ignored until the next compaction deletes them.

The merged file is written one block of time at a time, an hour by default. The rows of
a block are read from the merged files that overlap it, sorted by component, metric and
timestamp, and written as the next row groups. Memory stays bounded by one block's rows.
Each row group then covers one block, so a read of recent hours skips the row groups of
the other hours by their timestamp statistics, as it skipped whole files before the
compaction.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from predictor.exceptions import PredictorError
from predictor.telemetry.arrow_rows import as_row_table, key_order, summarise_sorted
from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP
from predictor.telemetry.store_files import sync_folder

#: Key of the marker metadata that lists the part files a compaction replaced.
REPLACES_KEY = b"predictor.replaces"
#: Span of the rows merged in memory at once; each block starts new row groups.
COMPACT_BLOCK = pd.Timedelta(hours=1)


@dataclass(frozen=True)
class CompactedDay:
    """The part files of one UTC day, or of one hour of a day not ended, merged into one.

    Attributes
    ----------
    date : str
        The day, ``YYYY-MM-DD``.
    files : int
        The part files merged.
    rows : int
        The rows of the merged file.
    hour : str or None
        ``HH:MM``, the start of the merged block of a day that had not ended; None when
        the whole day was merged.
    """

    date: str
    files: int
    rows: int
    hour: str | None = None


@dataclass(frozen=True)
class Merge:
    """Part files to merge into one: their summary rows, and where they lie."""

    date: str
    hour: str | None
    summaries: pd.DataFrame


def plan_merges(
    summaries: pd.DataFrame, cutoff: pd.Timestamp, block: pd.Timedelta
) -> list[Merge]:
    """Choose the part files to merge, given the store's summary rows.

    A day that ends at or before ``cutoff`` with more than one part file is merged
    whole. In a day that has not ended, the part files that lie within one block that
    ends at or before ``cutoff`` are merged when there is more than one. So 5-minute
    appends become one file per hour while the day goes on, and every opening of the
    store reads few markers.
    """
    last_ended = (cutoff.floor("D") - pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    merges = []
    for date, day in summaries.groupby("date", sort=True):
        if date <= last_ended:
            if day["file"].nunique() > 1:
                merges.append(Merge(str(date), None, day))
            continue
        ranges = day.groupby("file").agg(
            first=("first_timestamp", "min"), last=("last_timestamp", "max")
        )
        starts = ranges["first"].dt.floor(block)
        ends = starts + block
        eligible = (ranges["last"] < ends) & (ends <= cutoff)
        for start, files in ranges.index[eligible].groupby(starts[eligible]).items():
            if len(files) > 1:
                rows = day.loc[day["file"].isin(files)]
                merges.append(Merge(str(date), start.strftime("%H:%M"), rows))
    return merges


class CompactionError(PredictorError):
    """The part files of a day cannot be merged without losing or repeating rows.

    The day is left as it was.
    """


def replaced_files(marker: pa.Table) -> list[str]:
    """Return the part files (relative to the store root) a marker's commit replaced."""
    metadata = marker.schema.metadata or {}
    raw = metadata.get(REPLACES_KEY)
    return [] if raw is None else list(json.loads(raw))


def with_replaced_files(summary: pa.Table, files: list[str]) -> pa.Table:
    """Return a marker summary that records ``files`` as replaced by its commit."""
    return summary.replace_schema_metadata({REPLACES_KEY: json.dumps(sorted(files))})


def write_merged_file(
    root: Path,
    day: pd.DataFrame,
    block: pd.Timedelta,
    folder: Path,
    transaction: str,
    written: list[Path],
    file_schema: pa.Schema,
    row_group_rows: int,
) -> pa.Table:
    """Write the rows of part files of one day as one part file in ``folder``.

    ``day`` contains the summary rows of the files to merge (``file``, ``first_timestamp``,
    ``last_timestamp`` per component and file). The file is written under a hidden
    temporary name, synced and renamed. Its final path is added to ``written`` before
    the rename, so a rollback can remove it.

    Returns
    -------
    pyarrow.Table
        The summary of the new file: one row per component in name order with
        ``component``, ``first_timestamp``, ``last_timestamp`` and ``rows``.

    Raises
    ------
    CompactionError
        If two files hold a row with the same key.
    """
    ranges = day.groupby("file").agg(
        first=("first_timestamp", "min"), last=("last_timestamp", "max")
    )
    name = f"part-{transaction}-{uuid.uuid4().hex}.parquet"
    temporary = folder / f".{name}.tmp"
    final = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    written.append(final)
    summaries = []
    try:
        with temporary.open("wb") as handle:
            with pq.ParquetWriter(
                handle, file_schema, use_dictionary=[COMPONENT, METRIC], store_schema=False
            ) as writer:
                starts = _block_starts(ranges["first"].min(), ranges["last"].max(), block)
                for start in starts:
                    end = start + block
                    files = ranges.index[(ranges["last"] >= start) & (ranges["first"] < end)]
                    if files.empty:
                        continue
                    rows = _sorted_block(root, sorted(files), start, end, file_schema, folder)
                    writer.write_table(
                        rows.select(file_schema.names).cast(file_schema),
                        row_group_size=row_group_rows,
                    )
                    summaries.append(summarise_sorted(rows))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_folder(folder)
    return _combined_summary(summaries)


def _block_starts(
    first: pd.Timestamp, last: pd.Timestamp, block: pd.Timedelta
) -> pd.DatetimeIndex:
    return pd.date_range(first.floor(block), last, freq=block)


def _sorted_block(
    root: Path,
    files: list[str],
    start: pd.Timestamp,
    end: pd.Timestamp,
    file_schema: pa.Schema,
    folder: Path,
) -> pa.Table:
    """Read the rows in [start, end) from ``files``, in key order."""
    dataset = ds.dataset(
        [str(root / name) for name in files], format="parquet", schema=file_schema
    )
    in_block = (ds.field(TIMESTAMP) >= _scalar(start)) & (ds.field(TIMESTAMP) < _scalar(end))
    rows = as_row_table(dataset.to_table(filter=in_block))
    order = key_order(rows)
    if order.repeated.any():
        repeats = int(np.count_nonzero(order.repeated))
        raise CompactionError(
            f"telemetry store: {repeats} rows of the part files in {folder} repeat a "
            f"(component, metric, timestamp) key; the day is left as it is"
        )
    return rows if order.is_identity() else rows.take(order.order)


def _scalar(timestamp: pd.Timestamp) -> pa.Scalar:
    return pa.scalar(timestamp.as_unit("ns").value, type=pa.timestamp("ns", tz="UTC"))


def _combined_summary(blocks: list[pa.Table]) -> pa.Table:
    """Combine the per-block summaries into one row per component, in name order."""
    combined = pa.concat_tables(blocks).group_by(COMPONENT).aggregate(
        [("first_timestamp", "min"), ("last_timestamp", "max"), ("rows", "sum")]
    )
    combined = combined.rename_columns(
        {
            "first_timestamp_min": "first_timestamp",
            "last_timestamp_max": "last_timestamp",
            "rows_sum": "rows",
        }
    )
    combined = combined.select([COMPONENT, "first_timestamp", "last_timestamp", "rows"])
    return combined.sort_by(COMPONENT)


def delete_replaced(
    root: Path,
    replaced: set[str],
    marker_files: dict[str, set[str]],
    remove_marker: Callable[[str], None],
) -> tuple[int, int]:
    """Delete replaced part files, then the markers whose part files are all replaced.

    Part files go first, so a crash in between never leaves a part file without its
    marker. Markers are deleted in the order of ``marker_files``. Returns the numbers of
    part files and markers deleted.
    """
    files_deleted = 0
    for name in sorted(replaced):
        path = root / name
        if path.exists():
            path.unlink()
            files_deleted += 1
    markers_deleted = 0
    for transaction, files in marker_files.items():
        if files and files <= replaced:
            remove_marker(transaction)
            markers_deleted += 1
    return files_deleted, markers_deleted
