"""Benchmark stages: one module per stage, each with ``prepare(ctx)`` and ``measure(ctx)``.

``prepare`` does the untimed setup and caches it under ``ctx.workdir``, so running it
again is cheap. ``measure`` runs in a fresh process and returns the stage's own fields:
at least ``wall_s`` and a rate, and for comparisons with a peer the peer's figures and
``ratio`` (how many times faster ours is).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StageContext:
    """What a stage is run with.

    Attributes
    ----------
    workdir : pathlib.Path
        The stage's own cache folder, created before ``prepare``.
    components : int
        Fleet size.
    data_dir : pathlib.Path
        Folder with the ``smd/`` and ``asd/`` data sets for :mod:`benchmarks.fleet`.
    """

    workdir: Path
    components: int
    data_dir: Path
