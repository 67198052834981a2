"""Append-only, idempotent Parquet store of long telemetry rows.

Layout under the root folder (hive partitioning by day, readable by pyarrow, DuckDB or
Spark)::

    date=<YYYY-MM-DD>/part-<txid>-<uuid>.parquet
    _commits/<txid>

An append writes one part file per UTC day it touches, holding the rows of all its
components with the columns ``component`` and ``metric`` (strings, dictionary-encoded in
the file), ``timestamp`` (``timestamp[ns, UTC]``) and ``value`` (float64). Rows are
sorted by component, metric and timestamp and written in row groups of
:data:`ROW_GROUP_ROWS` rows, so a read of a few components skips most row groups by
their statistics.

:meth:`TelemetryStore.adopt` instead copies a clean input Parquet file that already has
that shape as one part file, byte for byte (:mod:`predictor.telemetry.store_adopt`
lists the conditions). An adopted file keeps its own column order, timestamp unit and
row groups of up to 1,048,576 rows, and within each component its rows may be sorted
by timestamp then metric. Readers cast and sort what they read, so they return the
same rows either way.

Each row has one key, (component, metric, timestamp), and the store keeps one value per
key. :meth:`TelemetryStore.append` skips exact duplicates and returns rows that would
change a stored value as conflicts: the first value seen wins.

An append is one transaction. Its part files count as stored only once the marker file
``_commits/<txid>`` exists, which the append creates last by an atomic rename. Readers
skip part files without a marker, so an append that crashes or is killed at any point
leaves the store as it was; the next append deletes its leftover files. The marker is a
small Parquet file that summarises the transaction: one row per component and day with
the part file, the first and last timestamp and the row count. ``components()``,
``last_timestamp()``, deduplication and file pruning on read use these summaries
instead of the part files.

:meth:`TelemetryStore.compact` merges the part files of each completed day into one file,
committed with a marker that names the files it replaces; readers ignore replaced files
from that commit on, and the replaced files and markers are then deleted.

Stores written before this layout keep one folder per component and day,
``component=<name>/date=<YYYY-MM-DD>/part-*.parquet``, with empty markers or none
(:mod:`predictor.telemetry.store_legacy`). Their rows stay readable and count for
deduplication; new appends write only the layout above.
"""

from __future__ import annotations

import fcntl
import functools
import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from predictor.telemetry import store_legacy
from predictor.telemetry.arrow_rows import (
    ROW_SCHEMA,
    as_row_table,
    day_label,
    key_order,
    summarise_sorted,
    utc_days,
)
from predictor.telemetry.file_bytes import write_synced
from predictor.telemetry.schema import COMPONENT, LONG_COLUMNS, METRIC, TIMESTAMP, VALUE
from predictor.telemetry.store_adopt import AdoptableFile
from predictor.telemetry.store_compact import (
    COMPACT_BLOCK,
    CompactedDay,
    CompactionError,
    Merge,
    delete_replaced,
    plan_merges,
    replaced_files,
    with_replaced_files,
    write_merged_file,
)
from predictor.telemetry.store_dedupe import (
    KEPT_VALUE,
    KEY_COLUMNS,
    REASON_CONFLICT,
    AppendResult,
    deduplicate,
    empty_conflicts,
    normalise_input,
)
from predictor.telemetry.store_files import (
    COMMITS_DIR,
    committed_markers,
    is_visible,
    sync_folder,
    write_marker,
)

logger = logging.getLogger(__name__)

__all__ = [
    "KEPT_VALUE",
    "KEY_COLUMNS",
    "REASON_CONFLICT",
    "ROW_GROUP_ROWS",
    "AppendResult",
    "TelemetryStore",
]

DATE = "date"
FIRST_TIMESTAMP = "first_timestamp"
LAST_TIMESTAMP = "last_timestamp"
FILE = "file"
FLEET_FILE_SCHEMA = pa.schema(
    [
        pa.field(COMPONENT, pa.string()),
        pa.field(METRIC, pa.string()),
        pa.field(TIMESTAMP, pa.timestamp("ns", tz="UTC")),
        pa.field(VALUE, pa.float64()),
    ]
)
# Row groups of this many rows keep a read of one component small: Parquet statistics
# give each row group's component range, and readers skip the row groups outside it.
ROW_GROUP_ROWS = 65_536
LOCK_NAME = ".lock"
#: A read lists and opens the part files at most this many times when compactions
#: delete listed files in between.
READ_ATTEMPTS = 3


class TelemetryStore:
    """Parquet store of long telemetry rows, one file per append and UTC day.

    Parameters
    ----------
    root : str or Path
        The store folder; created on the first append.

    Notes
    -----
    Appends hold an exclusive ``flock`` on ``<root>/.lock``, so appends from several
    processes on one host run one after the other. Readers take no lock: they see only
    the part files of committed appends, because each append writes its files first
    (each under a hidden temporary name, synced and renamed) and then commits them all
    at once by renaming its marker into ``_commits/``. A crash mid-append leaves the
    stored rows as they were; appending the same rows again stores them.

    Deduplication reads only the stored part files whose summary shows rows of an
    input component in the input's time range, so appending rows newer than every
    stored row reads no part file.

    Every append adds one file per day and one marker, and ``components()``,
    ``last_timestamp()`` and each append read all markers (a process reads each marker
    once and keeps it in memory). :meth:`compact` merges each completed day's files and
    markers into one (:mod:`predictor.telemetry.store_compact`).

    Examples
    --------
    >>> import tempfile
    >>> store = TelemetryStore(tempfile.mkdtemp())
    >>> rows = pd.DataFrame({
    ...     "timestamp": pd.to_datetime(["2026-01-01T00:00Z", "2026-01-01T00:01Z"]),
    ...     "component": "gpu-1", "metric": "temp", "value": [60.0, 61.0]})
    >>> store.append(rows).written
    2
    >>> store.append(rows).duplicates
    2
    >>> len(store.read(components=["gpu-1"]))
    2
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._summary_cache: dict[str, pd.DataFrame] = {}
        self._replaces_cache: dict[str, list[str]] = {}

    # --- writing ----------------------------------------------------------------------

    def append(
        self,
        rows: pd.DataFrame | pa.Table,
        before_commit: Callable[[AppendResult], None] | None = None,
    ) -> AppendResult:
        """Add rows that are not stored yet; skip duplicates and return conflicts.

        Parameters
        ----------
        rows : pandas.DataFrame or pyarrow.Table
            Long rows with ``timestamp`` (tz-aware), ``component``, ``metric`` and
            ``value``, in the order they were read. Other columns are ignored for
            storage but kept in the returned conflicts.
        before_commit : callable or None, default=None
            Called with the result after the new files are written and before they are
            committed, for work that must succeed together with the append (ingest
            writes its quarantine file here). If it raises, nothing is stored.

        Returns
        -------
        AppendResult
            ``written + duplicates + len(conflicts) == len(rows)``.

        Raises
        ------
        ValueError
            If a column is missing.
        TypeError
            If the timestamps are not timezone-aware.

        Notes
        -----
        Conflict rule: the first value seen for a key wins. A stored value beats any
        new one, and within ``rows`` the earliest row beats later ones.
        """
        table, as_frame = _input_table(rows)
        if table.num_rows == 0:
            result = AppendResult(0, 0, empty_conflicts(as_frame()))
            if before_commit is not None:
                before_commit(result)
            return result

        with self._lock():
            self._remove_uncommitted()
            order = key_order(table)
            ordered = table if order.is_identity() else table.take(order.order)
            stored = self._stored_overlapping(ordered)
            if order.repeated.any() or stored.num_rows:
                frame = as_frame()
                to_write, result = deduplicate(
                    frame, normalise_input(frame), stored.to_pandas()
                )
                ordered = _sorted_rows(to_write)
            else:
                result = AppendResult(table.num_rows, 0, empty_conflicts(as_frame(0)))
            self._write_transaction(
                lambda transaction, written: self._write(ordered, transaction, written),
                result, before_commit,
            )

        logger.debug(
            "telemetry store %s: %d rows in, %d written, %d duplicates, %d conflicts",
            self.root, table.num_rows, result.written, result.duplicates,
            len(result.conflicts),
        )
        return result

    def adopt(
        self,
        file: AdoptableFile,
        before_commit: Callable[[AppendResult], None] | None = None,
    ) -> AppendResult | None:
        """Store a file as a part file as it is, when it is in store order and new.

        Parameters
        ----------
        file : AdoptableFile
            The file's bytes and rows, from
            :func:`~predictor.telemetry.store_adopt.adoptable_file`.
        before_commit : callable or None, default=None
            As for :meth:`append`.

        Returns
        -------
        AppendResult or None
            Every row written; or None, with the store unchanged, when the rows are not
            in store order, when a stored row of one of the file's components lies in
            that component's time range, or when the store has legacy partitions.
            :meth:`append` then stores and deduplicates the rows.

        Notes
        -----
        A thread copies the bytes into the store while this one checks the order of the
        rows and the stored ranges. The copy is written under a temporary name, synced,
        renamed and committed by the marker exactly as :meth:`append` writes its part
        files, so readers never see a half-adopted file, and a crash or a declined
        adoption leaves the store as it was.
        """
        with self._lock():
            self._remove_uncommitted()
            if store_legacy.has_legacy_layout(self.root):
                return None
            rows = file.rows
            result = AppendResult(rows.num_rows, 0, empty_conflicts(_empty_frame(rows)))
            adopted = self._write_transaction(
                lambda transaction, written: self._write_adopted(file, transaction, written),
                result, before_commit,
            )
        if not adopted:
            return None
        logger.debug("telemetry store %s: adopted a file of %d rows and %d components",
                     self.root, rows.num_rows, file.summary.num_rows)
        return result

    def compact(
        self, before: str | pd.Timestamp | None = None, block: pd.Timedelta = COMPACT_BLOCK
    ) -> list[CompactedDay]:
        """Merge the part files of each UTC day before ``before`` into one file per day.

        Within a day that has not ended, the part files of each hour that has are merged
        into one file per hour (:func:`~predictor.telemetry.store_compact.plan_merges`).

        Parameters
        ----------
        before : str, Timestamp or None, default=None
            Days and hours that end at or before this time are compacted; None means now.
            A bound without a timezone is taken as UTC.
        block : Timedelta, default=COMPACT_BLOCK
            Span of the rows merged in memory at once (an hour); the merged file is
            sorted by block, then by component, metric and timestamp.

        Returns
        -------
        list of CompactedDay
            One entry per merge, in date order.

        Notes
        -----
        Each merge is one transaction, so a failed or killed compaction leaves the day as
        it was. Rows appended later to a compacted day go to a new part file, which the
        next compaction merges. Legacy per-component folders are left as they are.
        """
        cutoff = _as_utc(before if before is not None else pd.Timestamp.now(tz="UTC"))
        compacted = []
        if not self._days_with_several_files(cutoff.strftime("%Y-%m-%d")):
            # Reading every marker and taking the lock would find nothing to merge.
            return compacted
        with self._lock():
            self._remove_uncommitted()
            self._delete_replaced()
            for merge in plan_merges(self._summaries(), cutoff, block):
                compacted.append(self._merge_files(merge, block))
                self._delete_replaced()
        return compacted

    def _days_with_several_files(self, last_date: str) -> list[str]:
        """List the day folders up to ``last_date`` that contain more than one part file.

        Replaced files that a crash left behind count too, so the compaction that
        deletes them still runs.
        """
        days = []
        for folder in sorted(self.root.glob(f"{DATE}=*")):
            date = folder.name.removeprefix(f"{DATE}=")
            if date <= last_date and len(list(folder.glob("part-*.parquet"))) > 1:
                days.append(date)
        return days

    def _merge_files(self, merge: Merge, block: pd.Timedelta) -> CompactedDay:
        """Merge part files of one day into one and commit it as their replacement."""
        date, day = merge.date, merge.summaries
        where = date if merge.hour is None else f"{date} {merge.hour}"
        files = sorted(set(day[FILE]))
        expected = int(day["rows"].sum())

        def write(transaction: str, written: list[Path]) -> pa.Table:
            summary = write_merged_file(
                self.root, day, block, self.root / f"{DATE}={date}", transaction,
                written, FLEET_FILE_SCHEMA, ROW_GROUP_ROWS,
            )
            merged = int(pc.sum(summary.column("rows")).as_py())
            if merged != expected:
                raise CompactionError(
                    f"telemetry store {self.root}: the {len(files)} part files of {where} "
                    f"contain {merged} rows, their commit markers count {expected}; the "
                    f"files are left as they are"
                )
            new_file = Path(written[-1]).relative_to(self.root)
            return with_replaced_files(
                _summary_table([_with_file(summary, date, new_file)]), files
            )

        self._write_transaction(write, None, None)
        logger.info("telemetry store %s: compacted %d part files of %s into one "
                    "(%d rows, %d components)", self.root, len(files), where, expected,
                    day[COMPONENT].nunique())
        return CompactedDay(date, len(files), expected, merge.hour)

    def _delete_replaced(self) -> None:
        """Delete the part files and markers that committed compactions replaced (lock held)."""
        markers = self._read_markers()
        replaced = self._replaced(markers)
        if not replaced:
            return
        # Markers of compactions go last: while one exists, the files it replaced stay
        # ignored, so a crash part-way never brings back the rows of a deleted file.
        order = sorted(
            (t for t in markers if t in self._summary_cache),
            key=lambda transaction: bool(self._replaces_cache.get(transaction)),
        )
        marker_files = {t: set(self._summary_cache[t][FILE]) for t in order}
        files_deleted, markers_deleted = delete_replaced(
            self.root, replaced, marker_files, self._remove_marker
        )
        if files_deleted or markers_deleted:
            logger.debug("telemetry store %s: deleted %d replaced part files and %d "
                         "markers", self.root, files_deleted, markers_deleted)

    def _remove_marker(self, transaction: str) -> None:
        (self.root / COMMITS_DIR / transaction).unlink(missing_ok=True)
        self._summary_cache.pop(transaction, None)
        self._replaces_cache.pop(transaction, None)

    def _write_adopted(
        self, file: AdoptableFile, transaction: str, written: list[Path]
    ) -> pa.Table | None:
        """Copy the file's bytes into the store and return the summary, or None to decline."""
        date = day_label(file.day)
        with ThreadPoolExecutor(max_workers=1) as pool:
            copying = pool.submit(
                _write_atomically, file.content,
                self.root / f"{DATE}={date}", transaction, written,
            )
            summary = file.summary
            overlaps = 0
            if summary is not None and self._has_summaries():
                overlaps = len(self._overlapping_summaries(summary.to_pandas()))
            path = copying.result()
        if summary is None:
            return None
        if overlaps:
            logger.debug(
                "telemetry store %s: %d stored file ranges overlap the file's %d "
                "components; deduplicating instead of adopting",
                self.root, overlaps, summary.num_rows,
            )
            return None
        return _summary_table([_with_file(summary, date, path.relative_to(self.root))])

    def _write_transaction(
        self,
        write_parts: Callable[[str, list[Path]], pa.Table | None],
        result: AppendResult | None,
        before_commit: Callable[[AppendResult], None] | None,
    ) -> bool:
        """Write the part files of one append, run ``before_commit``, then commit.

        ``write_parts(transaction, written)`` writes the part files, adds each path to
        ``written`` before its rename, and returns the transaction's summary, or None
        to roll the transaction back. Returns whether the transaction was committed.
        """
        transaction = uuid.uuid4().hex
        written: list[Path] = []
        try:
            summary = write_parts(transaction, written)
            if summary is None:
                _remove(written)
                return False
            if before_commit is not None:
                before_commit(result)
            if written:
                self._commit(transaction, summary)
        except BaseException:
            _remove(written)
            raise
        return True

    def _commit(self, transaction: str, summary: pa.Table) -> None:
        """Make a transaction's files visible with one atomic rename of its marker."""
        write_marker(self.root, transaction, summary)

    def _write(self, rows: pa.Table, transaction: str, written: list[Path]) -> pa.Table:
        """Write one part file per UTC day of ``rows`` (in key order); return the summary."""
        summaries = []
        if rows.num_rows == 0:
            return _summary_table([])
        days = utc_days(rows.column(TIMESTAMP))
        first_day, last_day = days.min(), days.max()
        for day in [first_day] if first_day == last_day else np.unique(days):
            part = rows if first_day == last_day else rows.filter(pa.array(days == day))
            date = day_label(int(day))
            path = _write_atomically(
                _part_bytes(part.select(FLEET_FILE_SCHEMA.names)),
                self.root / f"{DATE}={date}", transaction, written,
            )
            summaries.append(
                _with_file(summarise_sorted(part), date, path.relative_to(self.root))
            )
        return _summary_table(summaries)

    def _remove_uncommitted(self) -> None:
        """Delete files left by appends that died before their commit (lock held)."""
        committed = committed_markers(self.root)
        removed = 0
        patterns = (f"{DATE}=*/*", f"{COMPONENT}=*/{DATE}=*/*")
        for path in (p for pattern in patterns for p in self.root.glob(pattern)):
            leftover = path.name.startswith(".") and path.name.endswith(".tmp")
            if leftover or not is_visible(path, committed):
                path.unlink(missing_ok=True)
                removed += 1
        for path in (self.root / COMMITS_DIR).glob(".*.tmp"):
            path.unlink(missing_ok=True)
        if removed:
            logger.warning(
                "telemetry store %s: removed %d files of an append that did not commit",
                self.root, removed,
            )

    def _stored_overlapping(self, rows: pa.Table) -> pa.Table:
        """Return the stored rows that can share a key with ``rows`` (in key order)."""
        tables = []
        if self._has_summaries():
            incoming = summarise_sorted(rows).to_pandas()
            overlaps = self._overlapping_summaries(incoming)
            if not overlaps.empty:
                condition = _condition(
                    sorted(set(overlaps[COMPONENT])),
                    _as_utc(incoming[FIRST_TIMESTAMP].min()),
                    _as_utc(incoming[LAST_TIMESTAMP].max()),
                    None,
                )
                tables.append(self._read_fleet(sorted(set(overlaps[FILE])), condition))
        if store_legacy.has_legacy_layout(self.root):
            tables.append(self._stored_legacy(rows))
        return _concat(tables)

    def _has_summaries(self) -> bool:
        return not self._summaries().empty

    def _overlapping_summaries(self, incoming: pd.DataFrame) -> pd.DataFrame:
        """Return the stored summary rows whose component and time range meet ``incoming``.

        ``incoming`` has one row per component with its first and last timestamp.
        """
        summaries = self._summaries()
        if summaries.empty or incoming.empty:
            return summaries.iloc[0:0]
        recent = summaries.loc[summaries[LAST_TIMESTAMP] >= incoming[FIRST_TIMESTAMP].min()]
        pairs = recent.merge(incoming, on=COMPONENT, suffixes=("", "_input"))
        return pairs.loc[
            (pairs[LAST_TIMESTAMP] >= pairs[f"{FIRST_TIMESTAMP}_input"])
            & (pairs[FIRST_TIMESTAMP] <= pairs[f"{LAST_TIMESTAMP}_input"])
        ]

    def _stored_legacy(self, rows: pa.Table) -> pa.Table:
        """Return the stored rows of the legacy partitions that ``rows`` touch."""
        touched = pa.table(
            {COMPONENT: rows.column(COMPONENT).cast(pa.string()),
             DATE: pa.array(utc_days(rows.column(TIMESTAMP)))}
        ).group_by([COMPONENT, DATE]).aggregate([])
        pairs = zip(touched.column(COMPONENT).to_pylist(),
                    (day_label(day) for day in touched.column(DATE).to_pylist()), strict=True)
        files = store_legacy.partition_files(self.root, committed_markers(self.root), pairs)
        if not files:
            return _empty_rows()
        return store_legacy.read_legacy(self.root, files, None)

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / LOCK_NAME).open("a") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    # --- reading ----------------------------------------------------------------------

    def read(
        self,
        components: Iterable[str] | None = None,
        start: str | pd.Timestamp | None = None,
        end: str | pd.Timestamp | None = None,
        metrics: Iterable[str] | None = None,
    ) -> pd.DataFrame:
        """Return stored rows sorted by component, metric and timestamp.

        Parameters
        ----------
        components : iterable of str or None, default=None
            Components to read; None reads all.
        start, end : str, Timestamp or None, default=None
            Inclusive time bounds. A bound without a timezone is taken as UTC.
        metrics : iterable of str or None, default=None
            Metrics to read; None reads all.

        Returns
        -------
        pandas.DataFrame
            Columns ``timestamp`` (``datetime64[ns, UTC]``), ``component``, ``metric``,
            ``value``.
        """
        table = self.read_table(components, start, end, metrics)
        if table.num_rows == 0:
            return _empty_long()
        return table.cast(ROW_SCHEMA).to_pandas()

    def read_table(
        self,
        components: Iterable[str] | None = None,
        start: str | pd.Timestamp | None = None,
        end: str | pd.Timestamp | None = None,
        metrics: Iterable[str] | None = None,
    ) -> pa.Table:
        """Return stored rows as an Arrow table sorted by component, metric and timestamp.

        Takes the same arguments as :meth:`read`. All part files are read in one
        dataset scan with the filters pushed down.

        Returns
        -------
        pyarrow.Table
            Columns ``timestamp`` (``timestamp[ns, UTC]``), ``component`` and ``metric``
            (``dictionary<int32, string>``) and ``value`` (``double``).
        """
        names = None if components is None else sorted({str(c) for c in components})
        start_ts, end_ts = _as_utc(start), _as_utc(end)
        condition = _condition(names, start_ts, end_ts, metrics)

        tables = []
        fleet = self._read_fleet_files(names, start_ts, end_ts, condition)
        if fleet is not None:
            tables.append(fleet)
        if store_legacy.has_legacy_layout(self.root):
            legacy = store_legacy.legacy_files(
                self.root, committed_markers(self.root), names,
                start_ts.strftime("%Y-%m-%d") if start_ts is not None else None,
                end_ts.strftime("%Y-%m-%d") if end_ts is not None else None,
            )
            if legacy:
                tables.append(store_legacy.read_legacy(self.root, legacy, condition))

        table = _concat(tables)
        order = key_order(table)
        if not order.is_identity():
            table = table.take(order.order)
        return table.set_column(
            1, COMPONENT, pc.dictionary_encode(table.column(COMPONENT))
        ).set_column(2, METRIC, pc.dictionary_encode(table.column(METRIC)))

    def components(self) -> list[str]:
        """Return the names of the components that have stored rows, sorted."""
        names = set(self._summaries()[COMPONENT])
        if store_legacy.has_legacy_layout(self.root):
            names |= store_legacy.legacy_components(self.root, committed_markers(self.root))
        return sorted(names)

    def last_timestamp(self, component: str) -> pd.Timestamp | None:
        """Return the latest stored timestamp of ``component``, or None if it has none."""
        return self.last_timestamps([component])[component]

    def last_timestamps(self, components: Iterable[str]) -> dict[str, pd.Timestamp | None]:
        """Return the latest stored timestamp of each component (None if it has none).

        One pass over the commit summaries serves all components, where a call of
        :meth:`last_timestamp` per component scans them once each.
        """
        names = sorted({str(component) for component in components})
        summaries = self._summaries()
        latest = (
            summaries.loc[summaries[COMPONENT].isin(names)]
            .groupby(COMPONENT)[LAST_TIMESTAMP]
            .max()
        )
        return {name: self._latest(name, latest.get(name)) for name in names}

    def _latest(self, component: str, summarised: pd.Timestamp | None) -> pd.Timestamp | None:
        """Combine a component's summarised latest time with its legacy partitions."""
        candidates = []
        if summarised is not None and not pd.isna(summarised):
            candidates.append(pd.Timestamp(summarised))
        if store_legacy.has_legacy_layout(self.root):
            legacy = store_legacy.legacy_last_timestamp(
                self.root, committed_markers(self.root), component
            )
            if legacy is not None:
                candidates.append(legacy)
        if not candidates:
            return None
        return max(candidates).tz_convert("UTC").as_unit("ns")

    def _summaries(self) -> pd.DataFrame:
        """Return the summary rows of all committed transactions.

        Each marker is read once per store object; markers never change once committed.
        """
        markers = self._read_markers()
        frames = [self._summary_cache[t] for t in markers if t in self._summary_cache]
        if not frames:
            return _no_summaries()
        summaries = pd.concat(frames, ignore_index=True)
        replaced = self._replaced(markers)
        if replaced:
            summaries = summaries.loc[~summaries[FILE].isin(replaced)].reset_index(drop=True)
        return summaries

    def _read_markers(self) -> dict[str, int]:
        """List the committed markers and cache those not read yet; return the listing."""
        for _ in range(READ_ATTEMPTS):
            markers = committed_markers(self.root)
            vanished = [
                transaction
                for transaction, size in markers.items()
                if size and transaction not in self._summary_cache
                and not self._read_marker(transaction)
            ]
            if not vanished:
                break
            # A compaction deleted them after committing its own marker, which a new
            # listing includes.
        return markers

    def _read_marker(self, transaction: str) -> bool:
        """Cache a marker's summary rows and the part files its commit replaced.

        Returns False when the marker no longer exists: a compaction deleted it after
        the listing, because all its part files were replaced.
        """
        try:
            marker = pq.read_table(self.root / COMMITS_DIR / transaction)
        except FileNotFoundError:
            return False
        self._summary_cache[transaction] = marker.to_pandas()
        self._replaces_cache[transaction] = replaced_files(marker)
        return True

    def _replaced(self, markers: dict[str, int]) -> set[str]:
        """Return the part files that the committed compactions replaced."""
        return {
            name
            for transaction in markers
            for name in self._replaces_cache.get(transaction, ())
        }

    def _fleet_files(
        self,
        components: list[str] | None,
        start: pd.Timestamp | None,
        end: pd.Timestamp | None,
    ) -> list[str]:
        """List the committed part files with rows of ``components`` in [start, end]."""
        summaries = self._summaries()
        selected = np.ones(len(summaries), dtype=bool)
        if components is not None:
            selected &= summaries[COMPONENT].isin(components).to_numpy()
        if start is not None:
            selected &= (summaries[LAST_TIMESTAMP] >= start).to_numpy()
        if end is not None:
            selected &= (summaries[FIRST_TIMESTAMP] <= end).to_numpy()
        return sorted(set(summaries.loc[selected, FILE]))

    def _read_fleet(self, files: list[str], condition: ds.Expression | None) -> pa.Table:
        dataset = ds.dataset(
            [str(self.root / name) for name in files], format="parquet",
            schema=FLEET_FILE_SCHEMA,
        )
        return dataset.to_table(columns=list(LONG_COLUMNS), filter=condition)

    def _read_fleet_files(
        self,
        names: list[str] | None,
        start: pd.Timestamp | None,
        end: pd.Timestamp | None,
        condition: ds.Expression | None,
    ) -> pa.Table | None:
        """Read the committed part files that can hold the requested rows, or None.

        Readers take no lock, so a compaction can delete a listed file before it is
        opened. Its rows are then in the compacted file, which the next listing finds.
        """
        for attempt in range(READ_ATTEMPTS):
            files = self._fleet_files(names, start, end)
            if not files:
                return None
            try:
                return self._read_fleet(files, condition)
            except (FileNotFoundError, pa.ArrowException, OSError):
                missing = [name for name in files if not (self.root / name).exists()]
                if not missing or attempt == READ_ATTEMPTS - 1:
                    raise
                logger.debug("telemetry store %s: %d part files were compacted during "
                             "a read; reading again", self.root, len(missing))
        return None


# --- helpers --------------------------------------------------------------------------


def _input_table(
    rows: pd.DataFrame | pa.Table,
) -> tuple[pa.Table, Callable[..., pd.DataFrame]]:
    """Check and convert append input to a row table; return it and a pandas view.

    The pandas view, called with a row count, returns the first rows of the input as
    given, with all its columns; it is built only when needed.
    """
    if isinstance(rows, pa.Table):
        missing = [column for column in LONG_COLUMNS if column not in rows.column_names]
        if missing:
            raise ValueError(
                f"rows: missing columns {missing}; expected {list(LONG_COLUMNS)}, "
                f"got {rows.column_names}"
            )
        time_type = rows.schema.field(TIMESTAMP).type
        if not pa.types.is_timestamp(time_type) or time_type.tz is None:
            raise TypeError(
                f"rows: column 'timestamp' must be timezone-aware, got type {time_type}"
            )

        def table_frame(n_rows: int | None = None) -> pd.DataFrame:
            head = rows if n_rows is None else rows.slice(0, n_rows)
            for index, field in enumerate(head.schema):
                if pa.types.is_dictionary(field.type):
                    head = head.set_column(
                        index, field.name, head.column(index).cast(field.type.value_type)
                    )
            return head.to_pandas()

        return as_row_table(rows), table_frame

    frame = normalise_input(rows)

    def given_frame(n_rows: int | None = None) -> pd.DataFrame:
        return rows if n_rows is None else rows.iloc[:n_rows]

    return pa.Table.from_pandas(frame, schema=ROW_SCHEMA, preserve_index=False), given_frame


def _sorted_rows(frame: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(frame[list(LONG_COLUMNS)], schema=ROW_SCHEMA,
                                 preserve_index=False)
    order = key_order(table)
    return table if order.is_identity() else table.take(order.order)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _empty_frame(rows: pa.Table) -> pd.DataFrame:
    """Return an empty frame with the columns ``rows`` has as a pandas view of append input."""
    return _empty_frame_of(rows.schema).copy()


@functools.lru_cache(maxsize=8)
def _empty_frame_of(schema: pa.Schema) -> pd.DataFrame:
    return _input_table(schema.empty_table())[1]()


def _with_file(summary: pa.Table, date: str, path: Path) -> pa.Table:
    """Add the day and the part file (relative to the store root) to a summary."""
    summary = summary.append_column(DATE, pa.array([date] * summary.num_rows, pa.string()))
    return summary.append_column(
        FILE, pa.array([path.as_posix()] * summary.num_rows, pa.string())
    )


@functools.cache
def _no_summaries() -> pd.DataFrame:
    """Return the summary frame of a store without commits (shared: never modify it)."""
    return _summary_table([]).to_pandas()


def _summary_table(parts: list[pa.Table]) -> pa.Table:
    schema = pa.schema(
        [
            pa.field(COMPONENT, pa.string()),
            pa.field(FIRST_TIMESTAMP, pa.timestamp("ns", tz="UTC")),
            pa.field(LAST_TIMESTAMP, pa.timestamp("ns", tz="UTC")),
            pa.field("rows", pa.int64()),
            pa.field(DATE, pa.string()),
            pa.field(FILE, pa.string()),
        ]
    )
    if not parts:
        return schema.empty_table()
    return pa.concat_tables(parts).cast(schema)


def _concat(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        return _empty_rows()
    return pa.concat_tables([as_row_table(t) for t in tables])


def _empty_rows() -> pa.Table:
    return ROW_SCHEMA.empty_table()


def _condition(
    components: list[str] | None,
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
    metrics: Iterable[str] | None,
) -> ds.Expression | None:
    condition = None
    if components is not None:
        condition = _and(condition, ds.field(COMPONENT).isin(components))
    if start is not None:
        condition = _and(condition, ds.field(TIMESTAMP) >= _ns_scalar(start))
    if end is not None:
        condition = _and(condition, ds.field(TIMESTAMP) <= _ns_scalar(end))
    if metrics is not None:
        condition = _and(condition, ds.field(METRIC).isin([str(m) for m in metrics]))
    return condition


def _and(left: ds.Expression | None, right: ds.Expression) -> ds.Expression:
    return right if left is None else left & right


def _ns_scalar(timestamp: pd.Timestamp) -> pa.Scalar:
    return pa.scalar(timestamp.as_unit("ns").value, type=pa.timestamp("ns", tz="UTC"))


def _as_utc(value: str | pd.Timestamp | None) -> pd.Timestamp | None:
    if value is None:
        return None
    timestamp = pd.Timestamp(value)
    if timestamp.tzinfo is None:
        return timestamp.tz_localize("UTC")
    return timestamp.tz_convert("UTC")


def _empty_long() -> pd.DataFrame:
    return pd.DataFrame(
        {
            TIMESTAMP: pd.Series([], dtype="datetime64[ns, UTC]"),
            COMPONENT: pd.Series([], dtype="str"),
            METRIC: pd.Series([], dtype="str"),
            VALUE: pd.Series([], dtype="float64"),
        }
    )


def _part_bytes(table: pa.Table) -> pa.Buffer:
    """Return rows as a part file's Parquet bytes.

    Component and metric are dictionary-encoded in the file; the Arrow schema is not
    stored, so readers see them as strings and can use the row-group statistics of those
    columns to skip row groups.
    """
    content = pa.BufferOutputStream()
    pq.write_table(
        table, content, row_group_size=ROW_GROUP_ROWS,
        use_dictionary=[COMPONENT, METRIC], store_schema=False,
    )
    return content.getvalue()


def _write_atomically(
    content: pa.Buffer | bytes, folder: Path, transaction: str, written: list[Path]
) -> Path:
    """Write one part file of a transaction so that readers never see it half-written.

    The bytes are written under a name starting with ".", which part-file globs skip,
    then synced and renamed. The final path is added to ``written`` before the rename,
    so a rollback can remove it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = f"part-{transaction}-{uuid.uuid4().hex}.parquet"
    temporary = folder / f".{name}.tmp"
    final = folder / name
    written.append(final)
    try:
        write_synced(temporary, content)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_folder(folder)
    return final


