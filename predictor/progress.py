"""Progress reporting: a bar in a terminal, plain log lines elsewhere (Airflow, CI)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


def progress(items: Iterable[T], *, desc: str, unit: str = "item") -> Iterator[T]:
    """Yield ``items`` while reporting progress.

    In an interactive terminal a tqdm bar is drawn on stderr. Elsewhere one INFO line
    is logged per tenth of the work, so Airflow task logs and CI output stay readable.
    """
    sequence = list(items)
    total = len(sequence)
    if sys.stderr.isatty():
        from tqdm import tqdm

        yield from tqdm(sequence, desc=desc, unit=unit, total=total, leave=False)
        return

    report_every = max(1, total // 10)
    for index, item in enumerate(sequence, start=1):
        yield item
        if index % report_every == 0 or index == total:
            logger.info("%s: %d of %d done (%s)", desc, index, total, unit)
