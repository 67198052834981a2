"""Append-only, idempotent Parquet store of long telemetry rows.

Layout under the root folder (hive partitioning, readable by pyarrow, DuckDB or Spark)::

    component=<name>/date=<YYYY-MM-DD>/part-<uuid>.parquet

Each file contains the columns ``timestamp`` (``timestamp[ns, UTC]``), ``metric`` and
``value``; ``component`` and ``date`` (the UTC day) come from the folder names. The
component name is percent-encoded in the folder name, which pyarrow decodes on read.

Each row has one key, (component, metric, timestamp), and the store keeps one value per
key. :meth:`TelemetryStore.append` skips exact duplicates and returns rows that would
change a stored value as conflicts: the first value seen wins.

An append is one transaction. Its part files are named ``part-<txid>-<uuid>.parquet``
and count as stored only once the empty marker file ``_commits/<txid>`` exists, which
the append creates last by an atomic rename. Readers skip part files without a marker,
so an append that crashes or is killed at any point leaves the store as it was; the
next append deletes its leftover files. Part files named ``part-<uuid>.parquet``, from
stores written before transactions, count as committed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from predictor.telemetry.readers import REASON
from predictor.telemetry.schema import COMPONENT, LONG_COLUMNS, METRIC, TIMESTAMP, VALUE

logger = logging.getLogger(__name__)

KEY_COLUMNS = [COMPONENT, METRIC, TIMESTAMP]
KEPT_VALUE = "kept_value"
REASON_CONFLICT = (
    "conflicting value for the same component, metric and timestamp (first value kept)"
)

DATE = "date"
FILE_SCHEMA = pa.schema(
    [
        pa.field(TIMESTAMP, pa.timestamp("ns", tz="UTC")),
        pa.field(METRIC, pa.string()),
        pa.field(VALUE, pa.float64()),
    ]
)
PARTITION_SCHEMA = pa.schema([pa.field(COMPONENT, pa.string()), pa.field(DATE, pa.string())])
NS_PER_DAY = 86_400 * 10**9
LOCK_NAME = ".lock"
COMMITS_DIR = "_commits"
_TRANSACTION_PART = re.compile(r"^part-([0-9a-f]{32})-[0-9a-f]{32}\.parquet$")


@dataclass
class AppendResult:
    """Outcome of :meth:`TelemetryStore.append`.

    Attributes
    ----------
    written : int
        Rows added to the store.
    duplicates : int
        Rows skipped because the same key and value is already stored or came earlier
        in the same input.
    conflicts : pandas.DataFrame
        Rows not stored because their key already has a different value. They keep
        their input columns and gain ``reason`` and ``kept_value`` (the value that
        stays in the store).
    """

    written: int
    duplicates: int
    conflicts: pd.DataFrame = field(default_factory=pd.DataFrame)


class TelemetryStore:
    """Partitioned Parquet store of long telemetry rows.

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
    at once by renaming a marker file into ``_commits/``. A crash mid-append leaves the
    stored rows as they were; appending the same rows again stores them.

    Every append adds one file per (component, day) it touches.

    TODO: add a compaction step that merges the files of a partition; until then many
    small appends make reads slower.

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

    # --- writing ----------------------------------------------------------------------

    def append(
        self,
        rows: pd.DataFrame,
        before_commit: Callable[[AppendResult], None] | None = None,
    ) -> AppendResult:
        """Add rows that are not stored yet; skip duplicates and return conflicts.

        Parameters
        ----------
        rows : pandas.DataFrame
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
        frame = _normalise_input(rows)
        if frame.empty:
            result = AppendResult(0, 0, _empty_conflicts(rows))
            if before_commit is not None:
                before_commit(result)
            return result

        with self._lock():
            self._remove_uncommitted()
            exact_repeat = frame.duplicated(subset=[*KEY_COLUMNS, VALUE], keep="first")
            candidates = frame.loc[~exact_repeat]
            stored = self._stored_keys(candidates)
            matched_value = _lookup_stored(candidates, stored)

            in_store = ~np.isnan(matched_value)
            same_value = in_store & (matched_value == candidates[VALUE].to_numpy())
            new = candidates.loc[~in_store]
            repeated_key = new.duplicated(subset=KEY_COLUMNS, keep="first").to_numpy()
            to_write = new.loc[~repeated_key]

            conflicts = _conflicts(
                rows, candidates, in_store & ~same_value, matched_value, new, repeated_key
            )
            duplicates = int(exact_repeat.sum()) + int(same_value.sum())
            result = AppendResult(
                written=len(to_write), duplicates=duplicates, conflicts=conflicts
            )
            self._write_transaction(to_write, result, before_commit)

        logger.debug(
            "telemetry store %s: %d rows in, %d written, %d duplicates, %d conflicts",
            self.root,
            len(frame),
            len(to_write),
            duplicates,
            len(conflicts),
        )
        return result

    def _write_transaction(
        self,
        rows: pd.DataFrame,
        result: AppendResult,
        before_commit: Callable[[AppendResult], None] | None,
    ) -> None:
        """Write the part files of one append, run ``before_commit``, then commit."""
        transaction = uuid.uuid4().hex
        written: list[Path] = []
        try:
            self._write(rows, transaction, written)
            if before_commit is not None:
                before_commit(result)
            if written:
                self._commit(transaction)
        except BaseException:
            for path in written:
                path.unlink(missing_ok=True)
            raise

    def _commit(self, transaction: str) -> None:
        """Make a transaction's files visible with one atomic rename of its marker."""
        folder = self.root / COMMITS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{transaction}.tmp"
        with temporary.open("wb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, folder / transaction)
        _sync_folder(folder)

    def _committed(self) -> set[str]:
        folder = self.root / COMMITS_DIR
        if not folder.is_dir():
            return set()
        return {name for name in os.listdir(folder) if not name.startswith(".")}

    def _is_visible(self, path: Path, committed: set[str]) -> bool:
        match = _TRANSACTION_PART.match(path.name)
        return match is None or match.group(1) in committed

    def _remove_uncommitted(self) -> None:
        """Delete files left by appends that died before their commit (lock held)."""
        committed = self._committed()
        removed = 0
        for path in self.root.glob(f"{COMPONENT}=*/{DATE}=*/*"):
            leftover = path.name.startswith(".") and path.name.endswith(".tmp")
            if leftover or not self._is_visible(path, committed):
                path.unlink(missing_ok=True)
                removed += 1
        for path in (self.root / COMMITS_DIR).glob(".*.tmp"):
            path.unlink(missing_ok=True)
        if removed:
            logger.warning(
                "telemetry store %s: removed %d files of an append that did not commit",
                self.root,
                removed,
            )

    def _write(self, rows: pd.DataFrame, transaction: str, written: list[Path]) -> None:
        if rows.empty:
            return
        days = rows[TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64) // NS_PER_DAY
        ordered = rows.assign(_day=days).sort_values(
            [COMPONENT, "_day", METRIC, TIMESTAMP], kind="stable"
        )
        for (component, day), part in ordered.groupby([COMPONENT, "_day"], sort=False):
            date = pd.Timestamp(int(day) * NS_PER_DAY, unit="ns").strftime("%Y-%m-%d")
            table = pa.Table.from_pandas(
                part[[TIMESTAMP, METRIC, VALUE]], schema=FILE_SCHEMA, preserve_index=False
            )
            _write_atomically(
                table, self._partition_dir(str(component), date), transaction, written
            )

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
        start_ts, end_ts = _as_utc(start), _as_utc(end)
        files = self._files(components, start_ts, end_ts)
        if not files:
            return _empty_long()

        condition = None
        if start_ts is not None:
            condition = _and(condition, ds.field(TIMESTAMP) >= _ns_scalar(start_ts))
        if end_ts is not None:
            condition = _and(condition, ds.field(TIMESTAMP) <= _ns_scalar(end_ts))
        if metrics is not None:
            condition = _and(condition, ds.field(METRIC).isin(list(metrics)))

        dataset = ds.dataset(
            [str(f) for f in files],
            format="parquet",
            schema=_dataset_schema(),
            partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
            partition_base_dir=str(self.root),
        )
        table = dataset.to_table(columns=list(LONG_COLUMNS), filter=condition)
        table = table.sort_by(
            [(COMPONENT, "ascending"), (METRIC, "ascending"), (TIMESTAMP, "ascending")]
        )
        return table.to_pandas()

    def components(self) -> list[str]:
        """Return the names of the components that have stored rows, sorted."""
        committed = self._committed()
        names = [
            unquote(folder.name.partition("=")[2])
            for folder in self._component_dirs(None)
            if any(self._is_visible(p, committed) for p in folder.glob("date=*/part-*.parquet"))
        ]
        return sorted(names)

    def last_timestamp(self, component: str) -> pd.Timestamp | None:
        """Return the latest stored timestamp of ``component``, or None if it has none."""
        folder = self.root / f"{COMPONENT}={_encode(component)}"
        committed = self._committed()
        for date_dir in sorted(folder.glob("date=*"), reverse=True):
            files = [
                p
                for p in sorted(date_dir.glob("part-*.parquet"))
                if self._is_visible(p, committed)
            ]
            if not files:
                continue
            table = ds.dataset(
                [str(f) for f in files], format="parquet", schema=FILE_SCHEMA
            ).to_table(columns=[TIMESTAMP])
            latest = pc.max(table[TIMESTAMP]).as_py()
            if latest is not None:
                return pd.Timestamp(latest).tz_convert("UTC").as_unit("ns")
        return None

    def _stored_keys(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Return the stored rows in the partitions that ``rows`` touch."""
        days = rows[TIMESTAMP].to_numpy(dtype="datetime64[ns]").astype(np.int64) // NS_PER_DAY
        touched = pd.DataFrame({COMPONENT: rows[COMPONENT].to_numpy(), "_day": days})
        files: list[Path] = []
        committed = self._committed()
        for component, day in touched.drop_duplicates().itertuples(index=False):
            date = pd.Timestamp(int(day) * NS_PER_DAY, unit="ns").strftime("%Y-%m-%d")
            folder = self._partition_dir(str(component), date)
            files.extend(
                p for p in sorted(folder.glob("part-*.parquet")) if self._is_visible(p, committed)
            )
        if not files:
            return _empty_long()
        dataset = ds.dataset(
            [str(f) for f in files],
            format="parquet",
            schema=_dataset_schema(),
            partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
            partition_base_dir=str(self.root),
        )
        return dataset.to_table(columns=list(LONG_COLUMNS)).to_pandas()

    def _files(
        self,
        components: Iterable[str] | None,
        start: pd.Timestamp | None,
        end: pd.Timestamp | None,
    ) -> list[Path]:
        """List part files, pruning partitions by component and by day."""
        first_day = start.strftime("%Y-%m-%d") if start is not None else None
        last_day = end.strftime("%Y-%m-%d") if end is not None else None
        files: list[Path] = []
        committed = self._committed()
        for folder in self._component_dirs(components):
            for date_dir in sorted(folder.glob("date=*")):
                date = date_dir.name.partition("=")[2]
                if first_day is not None and date < first_day:
                    continue
                if last_day is not None and date > last_day:
                    continue
                files.extend(
                    p
                    for p in sorted(date_dir.glob("part-*.parquet"))
                    if self._is_visible(p, committed)
                )
        return files

    def _component_dirs(self, components: Iterable[str] | None) -> list[Path]:
        if not self.root.is_dir():
            return []
        if components is None:
            return sorted(p for p in self.root.glob(f"{COMPONENT}=*") if p.is_dir())
        folders = (self.root / f"{COMPONENT}={_encode(name)}" for name in components)
        return [p for p in folders if p.is_dir()]

    def _partition_dir(self, component: str, date: str) -> Path:
        return self.root / f"{COMPONENT}={_encode(component)}" / f"{DATE}={date}"


# --- helpers --------------------------------------------------------------------------


def _encode(name: str) -> str:
    return quote(name, safe="")


def _dataset_schema() -> pa.Schema:
    return pa.schema([*FILE_SCHEMA, *PARTITION_SCHEMA])


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


def _normalise_input(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [column for column in LONG_COLUMNS if column not in rows.columns]
    if missing:
        raise ValueError(
            f"rows: missing columns {missing}; expected {list(LONG_COLUMNS)}, "
            f"got {list(rows.columns)}"
        )
    if not isinstance(rows[TIMESTAMP].dtype, pd.DatetimeTZDtype):
        raise TypeError(
            f"rows: column 'timestamp' must be timezone-aware, got dtype {rows[TIMESTAMP].dtype!r}"
        )
    frame = rows[list(LONG_COLUMNS)].reset_index(drop=True)
    frame[TIMESTAMP] = frame[TIMESTAMP].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    frame[COMPONENT] = frame[COMPONENT].astype(str)
    frame[METRIC] = frame[METRIC].astype(str)
    frame[VALUE] = frame[VALUE].astype("float64")
    return frame


def _lookup_stored(candidates: pd.DataFrame, stored: pd.DataFrame) -> np.ndarray:
    """Return, per candidate row, the stored value of its key, or NaN if none is stored."""
    if stored.empty:
        return np.full(len(candidates), np.nan)
    stored = stored.astype({COMPONENT: str, METRIC: str}).drop_duplicates(KEY_COLUMNS)
    merged = candidates[KEY_COLUMNS].merge(
        stored.rename(columns={VALUE: KEPT_VALUE}),
        on=KEY_COLUMNS,
        how="left",
        validate="many_to_one",
    )
    return merged[KEPT_VALUE].to_numpy(dtype="float64", na_value=np.nan)


def _conflicts(
    rows: pd.DataFrame,
    candidates: pd.DataFrame,
    against_store: np.ndarray,
    stored_value: np.ndarray,
    new: pd.DataFrame,
    repeated_key: np.ndarray,
) -> pd.DataFrame:
    """Collect conflicting rows with their original columns, a reason and the kept value."""
    original = rows.reset_index(drop=True)
    first_in_input = new.groupby(KEY_COLUMNS, sort=False)[VALUE].transform("first")

    positions = np.concatenate([candidates.index[against_store], new.index[repeated_key]])
    kept = np.concatenate([stored_value[against_store], first_in_input.to_numpy()[repeated_key]])
    order = np.argsort(positions, kind="stable")

    conflicts = original.iloc[positions[order]].reset_index(drop=True)
    conflicts[REASON] = REASON_CONFLICT
    conflicts[KEPT_VALUE] = kept[order]
    return conflicts


def _empty_conflicts(rows: pd.DataFrame) -> pd.DataFrame:
    conflicts = rows.iloc[0:0].copy()
    conflicts[REASON] = pd.Series([], dtype=object)
    conflicts[KEPT_VALUE] = pd.Series([], dtype="float64")
    return conflicts


def _write_atomically(
    table: pa.Table, folder: Path, transaction: str, written: list[Path]
) -> Path:
    """Write one part file of a transaction so that readers never see it half-written.

    The file is written under a name starting with ".", which part-file globs skip, then
    synced and renamed: ``os.replace`` is atomic on POSIX file systems. The final path
    is added to ``written`` before the rename, so a rollback can remove it.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = f"part-{transaction}-{uuid.uuid4().hex}.parquet"
    temporary = folder / f".{name}.tmp"
    final = folder / name
    written.append(final)
    try:
        with temporary.open("wb") as handle:
            pq.write_table(table, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(folder)
    return final


def _sync_folder(folder: Path) -> None:
    """Flush the folder entry of a renamed file, so the rename survives a power loss."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
