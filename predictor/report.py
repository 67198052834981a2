"""Reports on stored scores: the latest risk per component and lead times before failures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from predictor.store import RiskStore
from predictor.telemetry import LabeledFailure

WARNING_LEVELS = ("high", "critical")


@dataclass(frozen=True)
class LeadTime:
    """Lead time of the first ``high`` or ``critical`` level before a labeled failure.

    Attributes
    ----------
    failure : LabeledFailure
    first_warning : pandas.Timestamp or None
        The first score at ``high`` or ``critical`` inside the failure's window and at or
        before the failure time; None when there was none.
    first_detection : pandas.Timestamp or None
        The first such score anywhere in the window, which may come after the failure.
    scored : bool
        False when no score exists at or before the failure time, because the failure
        lies in the training data; such a failure measures nothing.
    """

    failure: LabeledFailure
    first_warning: pd.Timestamp | None
    first_detection: pd.Timestamp | None
    scored: bool = True

    @property
    def lead(self) -> pd.Timedelta | None:
        """Time from the first warning to the failure, when warned in time."""
        if self.first_warning is None:
            return None
        return self.failure.failure_time - self.first_warning

    def describe(self) -> str:
        """Return the outcome in words: the lead time, a late detection, or a miss."""
        if not self.scored:
            return "in training data, not scored"
        if self.lead is not None:
            return f"warned {_format_timedelta(self.lead)} before"
        if self.first_detection is not None:
            late = self.first_detection - self.failure.failure_time
            return f"late by {_format_timedelta(late)}"
        return "missed"


def lead_times(store: RiskStore, failures: Sequence[LabeledFailure]) -> list[LeadTime]:
    """Measure, from the stored scores, the lead time before each labeled failure."""
    results = []
    for failure in failures:
        scores = store.scores(
            component=failure.component, since=failure.window_start, until=failure.window_end
        )
        warnings = scores[scores["level"].isin(WARNING_LEVELS)]
        in_time = warnings[warnings["scored_at"] <= failure.failure_time]
        scored = not store.scores(component=failure.component, until=failure.failure_time).empty
        results.append(
            LeadTime(
                scored=scored,
                failure=failure,
                first_warning=in_time["scored_at"].min() if not in_time.empty else None,
                first_detection=warnings["scored_at"].min() if not warnings.empty else None,
            )
        )
    return results


def _format_timedelta(delta: pd.Timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m"


def _format_drivers(drivers: list[dict], limit: int = 3) -> str:
    if not drivers:
        return "-"
    return ", ".join(
        f"{driver['metric']} ({driver.get('kind', 'anomaly')} {driver['contribution']:.2f})"
        for driver in drivers[:limit]
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Format rows as a plain text table with aligned columns."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [
        max(len(header), *(len(row[i]) for row in cells)) if cells else len(header)
        for i, header in enumerate(headers)
    ]
    lines = ["  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for row in cells:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    return "\n".join(lines)


def risk_table(store: RiskStore) -> str:
    """Return the latest risk, level and drivers of every component as a table."""
    latest = store.latest_scores().sort_values("component")
    rows = [
        (
            row.component,
            row.scored_at.strftime("%Y-%m-%d %H:%M"),
            f"{row.risk:.3f}",
            row.level,
            _format_drivers(row.drivers),
        )
        for row in latest.itertuples()
    ]
    return format_table(("component", "scored at (UTC)", "risk", "level", "drivers"), rows)


def lead_time_table(results: Sequence[LeadTime]) -> str:
    """Return one line per labeled failure with the measured lead time."""
    rows = [
        (
            result.failure.component,
            result.failure.failure_time.strftime("%Y-%m-%d %H:%M"),
            result.first_detection.strftime("%Y-%m-%d %H:%M")
            if result.first_detection is not None
            else "-",
            result.describe(),
        )
        for result in results
    ]
    return format_table(
        ("component", "labeled failure (UTC)", "first high/critical", "outcome"), rows
    )
