"""Read whole files into block-aligned memory and write bytes to disk with one sync.

The telemetry store copies a clean input file into itself as it is (see
:mod:`predictor.telemetry.store_adopt`). A buffered copy of a large file puts a second
copy of the input's bytes into the page cache. On virtual machines that hand freed
memory back to the host, taking fresh pages is the slow part of such a copy: about
10 ms per MiB was measured on the benchmark machine. Bytes read by
:func:`read_block_aligned` start on a block boundary inside a buffer that extends to the
next boundary, so :func:`write_synced` can send them to the disk directly (``O_DIRECT``),
bypassing the page cache. Where the file system or the memory does not allow a direct
write, the bytes are written through the page cache into space reserved beforehand.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pyarrow as pa

logger = logging.getLogger(__name__)

#: Alignment of memory, file offsets and lengths for direct writes. 4096 bytes satisfies
#: disks with 512-byte and with 4096-byte logical blocks.
BLOCK_BYTES = 4096
#: Smaller files are written through the page cache, where a direct write gains nothing.
DIRECT_MIN_BYTES = 1 << 20
_O_DIRECT = getattr(os, "O_DIRECT", 0)
# Errors that mean "this file system or this memory cannot do a direct write".
_DIRECT_UNSUPPORTED = (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP)


def read_block_aligned(path: Path) -> pa.Buffer:
    """Return a file's bytes in memory that starts and can be read up to a block boundary.

    The memory comes from pyarrow's memory pool, which keeps and reuses freed memory,
    so repeated reads do not take fresh pages from the operating system.

    Parameters
    ----------
    path : pathlib.Path
        The file to read.

    Returns
    -------
    pyarrow.Buffer
        The bytes. Its parent buffer extends at least to the next multiple of
        :data:`BLOCK_BYTES` after its end.
    """
    with open(path, "rb", buffering=0) as handle:
        size = os.fstat(handle.fileno()).st_size
        capacity = _round_up(size) + BLOCK_BYTES
        parent = pa.allocate_buffer(capacity + BLOCK_BYTES)
        offset = -parent.address % BLOCK_BYTES
        view = memoryview(parent).cast("B")[offset:offset + capacity]
        read = 0
        # The extra block leaves room for bytes appended after fstat, so the loop reads
        # until the end of the file even when the file grew.
        while read < capacity:
            count = handle.readinto(view[read:])
            if not count:
                break
            read += count
    return parent.slice(offset, read)


def write_synced(path: Path, content: pa.Buffer | bytes) -> None:
    """Write ``content`` as a new file at ``path`` and flush it to disk.

    Block-aligned buffers from :func:`read_block_aligned` of at least
    :data:`DIRECT_MIN_BYTES` go to the disk directly; everything else is written into
    space reserved with ``posix_fallocate``.
    """
    padded = _padded_view(content)
    size = memoryview(content).nbytes
    if padded is not None and _write_direct(path, padded, size):
        logger.debug("file bytes: wrote %d bytes to %s past the page cache", size, path)
        return
    _write_buffered(path, content)


def _padded_view(content: pa.Buffer | bytes) -> memoryview | None:
    """Return the content extended to a block boundary, or None if its memory does not allow it."""
    if not _O_DIRECT or not isinstance(content, pa.Buffer) or content.size < DIRECT_MIN_BYTES:
        return None
    parent = content.parent
    if parent is None or content.address % BLOCK_BYTES:
        return None
    start = content.address - parent.address
    end = start + _round_up(content.size)
    if start < 0 or end > parent.size:
        return None
    return memoryview(parent).cast("B")[start:end]


def _write_direct(path: Path, padded: memoryview, size: int) -> bool:
    """Write block-padded bytes with ``O_DIRECT``, cut the file to ``size`` and sync it.

    Returns False, leaving no file behind, when the file system refuses direct writes.
    """
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _O_DIRECT, 0o644)
    except OSError as error:
        if error.errno in _DIRECT_UNSUPPORTED:
            logger.debug("file bytes: no direct writes to %s (%s)", path, error)
            return False
        raise
    try:
        _reserve(descriptor, len(padded))
        whole_blocks = _write_blocks(descriptor, padded)
        if whole_blocks:
            os.ftruncate(descriptor, size)
            os.fsync(descriptor)
    except OSError as error:
        os.close(descriptor)
        if error.errno in _DIRECT_UNSUPPORTED:
            logger.debug("file bytes: direct write to %s rejected (%s)", path, error)
            os.unlink(path)
            return False
        raise
    os.close(descriptor)
    if not whole_blocks:
        logger.debug("file bytes: direct write to %s stopped inside a block", path)
        os.unlink(path)
    return whole_blocks


def _write_blocks(descriptor: int, padded: memoryview) -> bool:
    """Write all of ``padded``; return False if a short write leaves an unaligned offset."""
    written = 0
    while written < len(padded):
        written += os.write(descriptor, padded[written:])
        if written % BLOCK_BYTES:
            return False
    return True


def _write_buffered(path: Path, content: pa.Buffer | bytes) -> None:
    """Write through the page cache into reserved space, then sync.

    Reserving the blocks first was measured to help on ext4: writes of 20 MiB into
    blocks allocated later took 100 to 300 ms, and 5 ms into reserved blocks.
    """
    size = memoryview(content).nbytes
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        _reserve(descriptor, size)
        with os.fdopen(descriptor, "wb", closefd=False) as handle:
            handle.write(content)
            handle.flush()
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _reserve(descriptor: int, size: int) -> None:
    """Allocate ``size`` bytes of a file where the file system supports it."""
    if size == 0 or not hasattr(os, "posix_fallocate"):
        return
    try:
        os.posix_fallocate(descriptor, 0, size)
    except OSError as error:
        if error.errno not in (*_DIRECT_UNSUPPORTED, errno.ENOSYS):
            raise


def _round_up(size: int) -> int:
    return -(-size // BLOCK_BYTES) * BLOCK_BYTES
