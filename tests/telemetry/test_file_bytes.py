"""Block-aligned reads and synced writes of whole files in the telemetry store."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from predictor.telemetry import file_bytes
from predictor.telemetry.file_bytes import (
    BLOCK_BYTES,
    DIRECT_MIN_BYTES,
    read_block_aligned,
    write_synced,
)

# Not a multiple of the block size, so the last block is partly padding.
LARGE_BYTES = DIRECT_MIN_BYTES * 3 + 1234


def _random_bytes(size: int) -> bytes:
    return np.random.default_rng(7).integers(0, 256, size, dtype=np.uint8).tobytes()


@pytest.fixture
def large_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.parquet"
    path.write_bytes(_random_bytes(LARGE_BYTES))
    return path


def test_read_starts_on_block_boundary(large_file: Path):
    content = read_block_aligned(large_file)

    assert content.to_pybytes() == large_file.read_bytes()
    assert content.address % BLOCK_BYTES == 0
    end_of_last_block = content.address + -(-content.size // BLOCK_BYTES) * BLOCK_BYTES
    assert end_of_last_block <= content.parent.address + content.parent.size


def test_read_empty_file(tmp_path: Path):
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")

    assert read_block_aligned(path).size == 0


def test_write_aligned_bytes_directly(
    large_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    content = read_block_aligned(large_file)
    target = tmp_path / "copy.parquet"

    with caplog.at_level(logging.DEBUG, logger=file_bytes.__name__):
        write_synced(target, content)

    assert target.stat().st_size == LARGE_BYTES
    assert target.read_bytes() == large_file.read_bytes()
    if not hasattr(os, "O_DIRECT") or "no direct writes" in caplog.text:
        pytest.skip(f"the file system of {tmp_path} takes no direct writes")
    assert "past the page cache" in caplog.text


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(_random_bytes(LARGE_BYTES), id="python-bytes"),
        pytest.param(pa.py_buffer(_random_bytes(LARGE_BYTES))[1:], id="unaligned-buffer"),
        pytest.param(pa.py_buffer(_random_bytes(1000)), id="small-buffer"),
        pytest.param(b"", id="empty"),
    ],
)
def test_write_other_bytes_buffered(content, tmp_path: Path):
    target = tmp_path / "copy.parquet"

    write_synced(target, content)

    assert target.read_bytes() == bytes(memoryview(content))


def test_write_on_tmpfs_same_bytes(large_file: Path):
    shared_memory = Path("/dev/shm")
    if not shared_memory.is_dir() or not os.access(shared_memory, os.W_OK):
        pytest.skip("no writable /dev/shm (tmpfs) on this machine")
    target = shared_memory / f"predictor-test-{os.getpid()}.parquet"
    try:
        write_synced(target, read_block_aligned(large_file))

        assert target.read_bytes() == large_file.read_bytes()
    finally:
        target.unlink(missing_ok=True)


def test_write_replaces_existing_file(large_file: Path, tmp_path: Path):
    target = tmp_path / "copy.parquet"
    target.write_bytes(b"x" * (LARGE_BYTES * 2))

    write_synced(target, read_block_aligned(large_file))

    assert target.read_bytes() == large_file.read_bytes()
