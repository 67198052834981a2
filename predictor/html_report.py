"""One self-contained HTML page with the backtest and risk-store figures and metric tables.

The page needs no network and no other file: figures are PNG images (rendered by
matplotlib's Agg renderer, no display needed) embedded as base64 ``data:`` URIs, the
style sheet is inline, and there are no scripts. It shows the same
figures as ``notebooks/failure_risk_analysis.ipynb``.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from predictor.config import LevelConfig
from predictor.evaluate import figures
from predictor.evaluate.results import (
    BacktestResults,
    entity_table,
    lead_time_table,
    metric_table,
)
from predictor.evaluate.runner import EARLY_ROWS, LABEL_FREE_THRESHOLD
from predictor.report import StoreHistory

logger = logging.getLogger(__name__)

FIGURE_DPI = 100
STYLE = """
body { font-family: sans-serif; max-width: 1150px; margin: 1.5em auto; color: #222; }
h1, h2, h3 { font-weight: 600; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f2f2f2; }
figure { margin: 0.8em 0 1.6em; }
figure img { max-width: 100%; }
figcaption { font-size: 0.9em; color: #555; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.4em 0.8em; }
"""


@dataclass
class _Page:
    """HTML fragments of the page body and the count of embedded figures."""

    parts: list[str] = field(default_factory=list)
    figure_count: int = 0

    def heading(self, level: int, text: str) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def note(self, text: str) -> None:
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def table(self, frame: pd.DataFrame, digits: int = 3) -> None:
        self.parts.append(
            frame.to_html(float_format=lambda value: f"{value:.{digits}f}", na_rep="-", border=0)
        )

    def figure(self, figure_id: str, figure: Figure, caption: str) -> None:
        self.parts.append(
            f'<figure id="{_slug(figure_id)}"><img alt="{html.escape(caption)}" '
            f'src="{figure_to_data_uri(figure)}"><figcaption>{html.escape(caption)}'
            "</figcaption></figure>"
        )
        self.figure_count += 1


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")


def figure_to_data_uri(figure: Figure) -> str:
    """Render ``figure`` as PNG and return it as a base64 ``data:image/png`` URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"data:image/png;base64,{encoded}"


def _backtest_section(page: _Page, results: BacktestResults) -> None:
    summary = results.summary
    comparison = summary["comparison"]
    page.heading(2, f"Backtest: {results.data_format.upper()}")
    page.paragraph(
        f"Output folder {results.path}, data {summary['data']}, "
        f"{len(results.series())} series, {summary.get('seconds', '-')} s."
    )
    for note in results.notes:
        page.note(note)

    page.heading(3, "Ensemble against each detector")
    page.paragraph(
        f"{comparison['metric']}: ensemble {comparison['ensemble']}, best single detector "
        f"{comparison['best_detector']} {comparison['best_detector_value']}, difference "
        f"{comparison['ensemble_minus_best']}."
    )
    page.figure("comparison", figures.comparison_figure(results), "Ensemble against each detector")
    if results.is_nab:
        page.paragraph("Normalized NAB score per cost profile (0 = flag nothing, 100 = perfect).")
        page.table(metric_table(results), digits=2)
    else:
        page.paragraph(
            f"Means over entities. Label-free F1, event recall, lead time and false alarms "
            f"count rows with an anomaly score of at least {LABEL_FREE_THRESHOLD:g}; an alarm "
            f"up to {EARLY_ROWS} rows before an event detects it."
        )
        page.table(metric_table(results))
        page.heading(3, "Ensemble per entity")
        page.table(entity_table(results))

    page.heading(3, "Anomaly score over time")
    page.paragraph(
        f"Labeled events are shaded; triangles mark where the score reaches "
        f"{LABEL_FREE_THRESHOLD:g}, the label-free threshold."
    )
    for series in results.series():
        page.figure(
            f"scores-{series}",
            figures.backtest_scores_figure(results, series),
            f"{series}: ensemble anomaly score",
        )

    page.heading(3, "Lead times")
    leads = lead_time_table(results)
    if leads.empty:
        page.note("No labeled events were found, so no lead times are measured.")
    else:
        page.paragraph(
            "Rows from the first alarm to the event (positive: before it); '-' means missed."
        )
        page.figure("lead-times", figures.lead_time_figure(leads), "Lead time per event")
        page.table(leads.set_index(["series", "event"]), digits=0)

    _calibration_section(page, results)


def _calibration_section(page: _Page, results: BacktestResults) -> None:
    page.heading(3, "Calibration")
    calibration = results.calibration
    if calibration is None:
        page.note("summary.json has no calibration section, so there is no reliability diagram.")
        return
    page.paragraph(
        f"Method {calibration.get('method', '-')}, fitted on the first "
        f"{calibration.get('fit_fraction', '-')} of each timeline and evaluated on the rest; "
        f"horizon {calibration.get('horizon_rows', '-')} rows."
    )
    per_entity = pd.DataFrame.from_dict(calibration["per_entity"], orient="index")
    mean = pd.DataFrame([calibration["mean"]], index=["mean"])
    page.table(pd.concat([per_entity, mean]), digits=4)
    page.figure("reliability", figures.reliability_figure(calibration), "Reliability diagram")
    page.table(pd.DataFrame(calibration["reliability"]), digits=3)


def _store_section(
    page: _Page, history: StoreHistory, store: str, levels: LevelConfig | None
) -> None:
    page.heading(2, "Risk store")
    page.paragraph(
        f"{store}: {len(history.scores)} scores of {len(history.components)} components, "
        f"{len(history.hook_calls)} hook calls, {len(history.failures)} labeled failures."
    )
    for component in history.components:
        page.figure(
            f"risk-{component}",
            figures.store_risk_figure(history, component, levels),
            f"{component}: failure-risk with labeled failures and hook calls",
        )
    if history.lead_times:
        page.heading(3, "Lead time before each labeled failure")
        rows = [
            {
                "component": result.failure.component,
                "labeled failure (UTC)": result.failure.failure_time,
                "first high/critical": result.first_detection,
                "outcome": result.describe(),
            }
            for result in history.lead_times
        ]
        page.table(pd.DataFrame(rows).set_index("component"))
    if len(history.hook_calls):
        page.heading(3, "Hook calls")
        columns = ["hook", "component", "previous_level", "level", "scored_at", "status"]
        page.table(history.hook_calls[columns].set_index("hook"))


def render_report(
    results: BacktestResults | None,
    history: StoreHistory | None,
    *,
    store: str = "risk store",
    levels: LevelConfig | None = None,
    notes: Sequence[str] = (),
) -> tuple[str, int]:
    """Render the report page.

    Parameters
    ----------
    results : BacktestResults or None
        A loaded backtest output folder; None leaves out the backtest part.
    history : StoreHistory or None
        The risk store's scores, hook calls and labeled failures; None leaves out the
        risk-store part.
    store : str, default="risk store"
        How the page names the risk store, for example its URL without password.
    levels : LevelConfig or None, default=None
        Level thresholds drawn on the risk figures.
    notes : sequence of str, default=()
        Notes shown at the top, for example why a part is missing.

    Returns
    -------
    tuple of (str, int)
        The HTML text and the number of embedded figures.
    """
    page = _Page()
    page.heading(1, "predictor: failure-risk report")
    page.paragraph(f"Generated {pd.Timestamp.now(tz='UTC'):%Y-%m-%d %H:%M} UTC.")
    for note in notes:
        page.note(note)
    if results is not None:
        _backtest_section(page, results)
    if history is not None:
        _store_section(page, history, store, levels)

    body = "\n".join(page.parts)
    text = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>predictor report</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
    return text, page.figure_count


def write_report(path: str | Path, text: str) -> Path:
    """Write the page through a temporary file, so a reader never sees a partial page."""
    target = Path(path)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    logger.info("report: wrote %s (%d bytes)", target, len(text.encode("utf-8")))
    return target
