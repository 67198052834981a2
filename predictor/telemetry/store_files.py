"""Files of the telemetry store: atomic part files, commit markers and transaction summaries.

A part file or marker is written under a hidden temporary name, synced and renamed, so
readers never see a half-written file. ``os.replace`` is atomic on POSIX file systems.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from predictor.telemetry.file_bytes import write_synced

COMMITS_DIR = "_commits"
TRANSACTION_PART = re.compile(r"^part-([0-9a-f]{32})-[0-9a-f]{32}\.parquet$")


def write_marker(root: Path, transaction: str, summary: pa.Table) -> None:
    """Commit a transaction: write its summary as the marker ``_commits/<txid>`` atomically."""
    folder = root / COMMITS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{transaction}.tmp"
    content = pa.BufferOutputStream()
    pq.write_table(summary, content)
    try:
        write_synced(temporary, content.getvalue())
        os.replace(temporary, folder / transaction)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    sync_folder(folder)


def committed_markers(root: Path) -> dict[str, int]:
    """Return the committed transactions and the size of each marker in bytes.

    Markers of transactions written before summaries existed are empty.
    """
    folder = root / COMMITS_DIR
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        return {
            entry.name: entry.stat().st_size
            for entry in entries
            if not entry.name.startswith(".")
        }


def is_visible(path: Path, committed: dict[str, int] | set[str]) -> bool:
    """Return whether a part file belongs to a committed transaction (or predates them)."""
    match = TRANSACTION_PART.match(path.name)
    return match is None or match.group(1) in committed


def sync_folder(folder: Path) -> None:
    """Flush the folder entry of a renamed file, so the rename survives a power loss."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
