"""Reports on stored scores: the latest risk per component and lead times before failures."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from predictor.config import Settings, SourceConfig
from predictor.store import RiskStore
from predictor.telemetry import LabeledFailure, read_labels

logger = logging.getLogger(__name__)

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
    scored_through : bool
        False when the newest score of the component comes before the failure time.
        A warning may still come, so such a failure is not counted as missed.
    """

    failure: LabeledFailure
    first_warning: pd.Timestamp | None
    first_detection: pd.Timestamp | None
    scored: bool = True
    scored_through: bool = True

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
        if not self.scored_through:
            return "after the newest score, not scored yet"
        return "missed"


@dataclass
class StoreHistory:
    """Everything the risk store holds for a report, with the configured labeled failures.

    Attributes
    ----------
    scores : pandas.DataFrame
        Every stored score, as :meth:`RiskStore.scores` returns it.
    hook_calls : pandas.DataFrame
        Every recorded hook call, as :meth:`RiskStore.hook_calls` returns it.
    failures : list of LabeledFailure
        The labeled failures of every source with labels, sorted by component and
        failure time.
    lead_times : list of LeadTime
        The lead time before each failure, measured from ``scores``.
    """

    scores: pd.DataFrame
    hook_calls: pd.DataFrame
    failures: list[LabeledFailure] = field(default_factory=list)
    lead_times: list[LeadTime] = field(default_factory=list)

    @property
    def components(self) -> list[str]:
        """The scored components, sorted by name."""
        return sorted(self.scores["component"].unique())


def load_store_history(store: RiskStore, sources: Sequence[SourceConfig]) -> StoreHistory:
    """Read all scores and hook calls, the sources' labeled failures and their lead times.

    Raises
    ------
    InputError, ConfigError
        If a source's label files are missing or malformed (see
        :func:`predictor.telemetry.read_labels`).
    """
    failures = sorted(
        (failure for source in sources for failure in read_labels(source)),
        key=lambda failure: (failure.component, failure.failure_time),
    )
    scores = store.scores()
    by_component = {
        component: scores[scores["component"] == component]
        for component in {failure.component for failure in failures}
    }
    history = StoreHistory(
        scores=scores,
        hook_calls=store.hook_calls(),
        failures=failures,
        lead_times=lead_times_from_scores(by_component, failures),
    )
    logger.info(
        "report: read %d scores of %d components, %d hook calls, %d labeled failures",
        len(history.scores),
        len(history.components),
        len(history.hook_calls),
        len(failures),
    )
    return history


def read_store_history(settings: Settings) -> StoreHistory | None:
    """Read the risk store of ``settings`` for a report, or None when it has no scores.

    A SQLite store whose file does not exist counts as empty and is not created.
    """
    url = sa.engine.make_url(settings.store_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).expanduser().is_file():
            logger.info("report: no risk store file at %s", url.database)
            return None
    store = RiskStore(settings.store_url)
    try:
        history = load_store_history(store, settings.sources)
    finally:
        store.close()
    return history if len(history.scores) else None


def store_label(settings: Settings) -> str:
    """Return the risk store URL with any password hidden, for reports and messages."""
    return sa.engine.make_url(settings.store_url).render_as_string(hide_password=True)


def lead_times(store: RiskStore, failures: Sequence[LabeledFailure]) -> list[LeadTime]:
    """Measure, from the stored scores, the lead time before each labeled failure."""
    components = sorted({failure.component for failure in failures})
    scores = {component: store.scores(component=component) for component in components}
    return lead_times_from_scores(scores, failures)


def lead_times_from_scores(
    scores: Mapping[str, pd.DataFrame], failures: Sequence[LabeledFailure]
) -> list[LeadTime]:
    """Measure the lead time before each labeled failure from scores already read.

    Parameters
    ----------
    scores : mapping of str to pandas.DataFrame
        Each failure's component to its stored scores (at least ``scored_at`` and
        ``level``), as :meth:`RiskStore.scores` returns them.
    failures : sequence of LabeledFailure
    """
    results = []
    for failure in failures:
        component_scores = scores[failure.component]
        times = component_scores["scored_at"]
        window = component_scores[(times >= failure.window_start) & (times <= failure.window_end)]
        warnings = window[window["level"].isin(WARNING_LEVELS)]
        in_time = warnings[warnings["scored_at"] <= failure.failure_time]
        results.append(
            LeadTime(
                scored=bool((times <= failure.failure_time).any()),
                scored_through=bool((times >= failure.failure_time).any()),
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
