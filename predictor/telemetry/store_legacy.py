"""Reading stores written in the per-component layout, before fleet files.

That layout has one folder per component and day,
``component=<percent-encoded name>/date=<YYYY-MM-DD>/part-*.parquet``, with the columns
``timestamp``, ``metric`` and ``value``; ``component`` and ``date`` come from the folder
names. New appends never write it, but its rows stay readable, count for deduplication
and are reported by ``components()`` and ``last_timestamp()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote, unquote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from predictor.telemetry.schema import COMPONENT, LONG_COLUMNS, METRIC, TIMESTAMP, VALUE
from predictor.telemetry.store_files import is_visible

DATE = "date"
LEGACY_FILE_SCHEMA = pa.schema(
    [
        pa.field(TIMESTAMP, pa.timestamp("ns", tz="UTC")),
        pa.field(METRIC, pa.string()),
        pa.field(VALUE, pa.float64()),
    ]
)
PARTITION_SCHEMA = pa.schema([pa.field(COMPONENT, pa.string()), pa.field(DATE, pa.string())])


def encode_name(name: str) -> str:
    """Percent-encode a component name for a folder name."""
    return quote(name, safe="")


def has_legacy_layout(root: Path) -> bool:
    """Return whether ``root`` contains any per-component folder."""
    return root.is_dir() and any(p.is_dir() for p in root.glob(f"{COMPONENT}=*"))


def component_dirs(root: Path, components: Iterable[str] | None) -> list[Path]:
    """Return the per-component folders, all of them or those of ``components``."""
    if not root.is_dir():
        return []
    if components is None:
        return sorted(p for p in root.glob(f"{COMPONENT}=*") if p.is_dir())
    folders = (root / f"{COMPONENT}={encode_name(name)}" for name in components)
    return [p for p in folders if p.is_dir()]


def legacy_files(
    root: Path,
    committed: dict[str, int],
    components: Iterable[str] | None,
    first_day: str | None,
    last_day: str | None,
) -> list[Path]:
    """List committed part files, pruning partitions by component and by day."""
    files: list[Path] = []
    for folder in component_dirs(root, components):
        for date_dir in sorted(folder.glob(f"{DATE}=*")):
            date = date_dir.name.partition("=")[2]
            if first_day is not None and date < first_day:
                continue
            if last_day is not None and date > last_day:
                continue
            files.extend(
                p for p in sorted(date_dir.glob("part-*.parquet")) if is_visible(p, committed)
            )
    return files


def partition_files(
    root: Path, committed: dict[str, int], pairs: Iterable[tuple[str, str]]
) -> list[Path]:
    """List committed part files of the given (component, date) partitions."""
    files: list[Path] = []
    for component, date in pairs:
        folder = root / f"{COMPONENT}={encode_name(component)}" / f"{DATE}={date}"
        files.extend(p for p in sorted(folder.glob("part-*.parquet")) if is_visible(p, committed))
    return files


def read_legacy(root: Path, files: list[Path], condition: ds.Expression | None) -> pa.Table:
    """Read legacy part files into the long columns."""
    dataset = ds.dataset(
        [str(f) for f in files], format="parquet",
        schema=pa.schema([*LEGACY_FILE_SCHEMA, *PARTITION_SCHEMA]),
        partitioning=ds.partitioning(PARTITION_SCHEMA, flavor="hive"),
        partition_base_dir=str(root),
    )
    return dataset.to_table(columns=list(LONG_COLUMNS), filter=condition)


def legacy_components(root: Path, committed: dict[str, int]) -> set[str]:
    """Return the components with a committed part file in the legacy layout."""
    return {
        unquote(folder.name.partition("=")[2])
        for folder in component_dirs(root, None)
        if any(is_visible(p, committed) for p in folder.glob(f"{DATE}=*/part-*.parquet"))
    }


def legacy_last_timestamp(
    root: Path, committed: dict[str, int], component: str
) -> pd.Timestamp | None:
    """Return the latest timestamp of ``component`` in the legacy layout, or None."""
    folder = root / f"{COMPONENT}={encode_name(component)}"
    for date_dir in sorted(folder.glob(f"{DATE}=*"), reverse=True):
        files = [
            p for p in sorted(date_dir.glob("part-*.parquet")) if is_visible(p, committed)
        ]
        if not files:
            continue
        table = ds.dataset([str(f) for f in files], format="parquet",
                           schema=LEGACY_FILE_SCHEMA).to_table(columns=[TIMESTAMP])
        latest = pc.max(table[TIMESTAMP]).as_py()
        if latest is not None:
            return pd.Timestamp(latest).tz_convert("UTC").as_unit("ns")
    return None
