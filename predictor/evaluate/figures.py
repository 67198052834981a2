"""Figures of a backtest and of the risk store, for the report and the analysis notebook.

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot, so no
global figure state is kept: the HTML report renders and drops each figure, and a
notebook shows the figure a cell returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from predictor.config import LevelConfig
from predictor.evaluate.backtest import ENSEMBLE
from predictor.evaluate.results import (
    BacktestResults,
    alarm_onsets,
    metric_table,
)
from predictor.evaluate.runner import LABEL_FREE_THRESHOLD

if TYPE_CHECKING:
    from predictor.report import StoreHistory

EVENT_COLOR = "tab:red"
ALARM_COLOR = "tab:orange"
HOOK_COLOR = "tab:purple"
ENSEMBLE_COLOR = "tab:blue"
MEMBER_COLOR = "tab:gray"
# Bars of the detector comparison, per data layout.
MATRIX_COMPARISON_METRICS = ("best_f1", "auc_pr")


def backtest_scores_figure(
    results: BacktestResults,
    series: str,
    detector: str = ENSEMBLE,
    threshold: float = LABEL_FREE_THRESHOLD,
) -> Figure:
    """Plot one series' anomaly score over time with labeled events and alarm onsets.

    Labeled events are shaded over their detection window (SMD/ASD: the labeled rows and
    the early-warning rows before them; NAB: the labeled window), with a line at the
    row lead times are measured to. Alarm onsets are the rows where the score reaches
    ``threshold`` (default: the label-free threshold) from below.
    """
    frame = results.scores(series, detector)
    events = results.events(series, frame)
    x = frame["timestamp"] if results.is_nab else frame["row"]
    scores = frame["anomaly_score"].to_numpy()

    figure = Figure(figsize=(11, 3.2), layout="constrained")
    axes = figure.subplots()
    axes.plot(x, scores, color=ENSEMBLE_COLOR, linewidth=0.6, label=f"{detector} score")
    for number, event in enumerate(events):
        axes.axvspan(
            x.iloc[event.start],
            x.iloc[event.end],
            color=EVENT_COLOR,
            alpha=0.15,
            linewidth=0,
            label="labeled event" if number == 0 else None,
        )
        axes.axvline(x.iloc[event.reference], color=EVENT_COLOR, linewidth=0.8)
    onsets = alarm_onsets(scores, threshold)
    axes.axhline(threshold, color=ALARM_COLOR, linestyle="--", linewidth=0.8)
    axes.plot(
        x.iloc[onsets],
        np.full(len(onsets), 1.02),
        linestyle="none",
        marker="v",
        color=ALARM_COLOR,
        label=f"score reaches {threshold:g} ({len(onsets)}x)",
    )

    if results.is_nab:
        _concise_dates(axes)
    axes.set_ylim(0, 1.06)
    axes.set_ylabel("anomaly score")
    axes.set_xlabel("time (UTC)" if results.is_nab else "test row")
    axes.set_title(f"{series}: {detector} anomaly score, {len(events)} labeled events")
    axes.legend(loc="upper left", fontsize="small")
    return figure


def _concise_dates(axes) -> None:
    """Label a time axis with short dates that do not overlap."""
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def store_risk_figure(
    history: StoreHistory, component: str, levels: LevelConfig | None = None
) -> Figure:
    """Plot a component's stored risk over time with labeled failures and hook calls.

    Failure windows are shaded and failure times drawn as lines. Each recorded hook call
    is a marker at the top, at the scoring time that triggered it. ``levels`` adds the
    ``high`` and ``critical`` thresholds as dotted lines.
    """
    scores = history.scores[history.scores["component"] == component]
    failures = [failure for failure in history.failures if failure.component == component]
    calls = history.hook_calls[history.hook_calls["component"] == component]
    start, end = scores["scored_at"].min(), scores["scored_at"].max()

    figure = Figure(figsize=(11, 3.2), layout="constrained")
    axes = figure.subplots()
    axes.plot(
        scores["scored_at"],
        scores["risk"],
        color=ENSEMBLE_COLOR,
        linewidth=0.7,
        label="failure-risk",
    )
    axes.plot(
        scores["scored_at"],
        scores["anomaly_score"],
        color=MEMBER_COLOR,
        linewidth=0.5,
        alpha=0.7,
        label="anomaly score",
    )
    shown_failures = [
        failure
        for failure in failures
        if failure.window_end >= start and failure.window_start <= end
    ]
    for number, failure in enumerate(shown_failures):
        axes.axvspan(
            failure.window_start,
            failure.window_end,
            color=EVENT_COLOR,
            alpha=0.15,
            linewidth=0,
            label="labeled failure window" if number == 0 else None,
        )
        axes.axvline(failure.failure_time, color=EVENT_COLOR, linewidth=0.8)
    if len(calls):
        axes.plot(
            calls["scored_at"],
            np.full(len(calls), 1.02),
            linestyle="none",
            marker="v",
            color=HOOK_COLOR,
            label=f"hook call ({len(calls)}x)",
        )
    if levels is not None:
        for level in ("high", "critical"):
            axes.axhline(
                levels.enter_threshold(level), color=ALARM_COLOR, linestyle=":", linewidth=0.8
            )

    axes.set_xlim(start, end)
    _concise_dates(axes)
    axes.set_ylim(0, 1.06)
    axes.set_ylabel("risk")
    axes.set_xlabel("scored at (UTC)")
    axes.set_title(
        f"{component}: failure-risk, {len(shown_failures)} labeled failures, "
        f"{len(calls)} hook calls"
    )
    axes.legend(loc="upper left", fontsize="small")
    return figure


def lead_time_figure(leads: pd.DataFrame) -> Figure:
    """Plot the lead time of every labeled event, as :func:`lead_time_table` returns it.

    Bars right of zero are warnings before the event and bars left of it late alarms;
    missed events are crosses at zero.
    """
    # NAB series are "<category>/<file>.csv"; the file stem is enough to tell them apart.
    labels = [f"{Path(row.series).stem} #{row.event}" for row in leads.itertuples()]
    positions = np.arange(len(leads))
    lead = leads["lead_rows"].to_numpy(dtype="float64")
    missed = np.isnan(lead)

    figure = Figure(figsize=(10, 1.2 + 0.28 * max(len(leads), 3)), layout="constrained")
    axes = figure.subplots()
    colors = np.where(lead >= 0, ENSEMBLE_COLOR, EVENT_COLOR)
    axes.barh(positions[~missed], lead[~missed], color=colors[~missed], label="first alarm")
    # A dot at each bar's end keeps a lead of 0 rows (no bar) visible.
    axes.scatter(lead[~missed], positions[~missed], s=12, c=colors[~missed], zorder=3)
    axes.plot(
        np.zeros(missed.sum()),
        positions[missed],
        linestyle="none",
        marker="x",
        color=EVENT_COLOR,
        label=f"missed ({int(missed.sum())})",
    )
    axes.axvline(0, color="black", linewidth=0.6)
    axes.set_yticks(positions, labels, fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel("lead time in rows (positive: alarm before the event)")
    axes.set_title("Lead time of the first alarm per labeled event")
    if len(leads):
        axes.legend(loc="lower right", fontsize="small")
    else:
        axes.text(
            0.5, 0.5, "no labeled events", ha="center", va="center", transform=axes.transAxes
        )
    return figure


def reliability_figure(calibration: dict[str, Any]) -> Figure:
    """Plot the reliability diagram of the ``calibration`` section of a backtest summary.

    Each point is one probability bin: the mean predicted probability against the
    observed failure rate, with its size growing with the bin's row count. The bars
    below show the row counts.
    """
    table = pd.DataFrame(calibration["reliability"])
    mean = calibration["mean"]

    figure = Figure(figsize=(6, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, height_ratios=(3, 1), sharex=True)
    top.plot(
        [0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8, label="perfectly calibrated"
    )
    counts = table["count"].to_numpy(dtype="float64")
    sizes = 20 + 180 * counts / counts.max() if len(counts) and counts.max() > 0 else 20
    top.plot(table["mean_predicted"], table["observed_rate"], color=ENSEMBLE_COLOR, linewidth=0.8)
    top.scatter(
        table["mean_predicted"],
        table["observed_rate"],
        s=sizes,
        color=ENSEMBLE_COLOR,
        zorder=3,
        label="calibrated risk",
    )
    top.set_ylabel("observed failure rate")
    top.set_ylim(-0.02, 1.02)
    top.set_title(
        f"Reliability ({calibration.get('method', 'calibration')})\nBrier score "
        f"{mean['brier']:.4f}, base-rate predictor {mean['brier_base_rate']:.4f}"
    )
    top.legend(loc="upper left", fontsize="small")

    widths = (table["bin_high"] - table["bin_low"]).to_numpy(dtype="float64")
    bottom.bar(
        table["bin_low"], counts, width=widths, align="edge", color=MEMBER_COLOR, edgecolor="white"
    )
    bottom.set_yscale("symlog")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("predicted probability of a failure within the horizon")
    bottom.set_ylabel("rows")
    return figure


def comparison_figure(results: BacktestResults) -> Figure:
    """Plot the ensemble against every single detector and baseline as grouped bars.

    SMD/ASD: mean best F1 and AUC-PR over entities. NAB: the normalized score of each
    profile.
    """
    table = metric_table(results)
    columns: Sequence[str] = (
        list(table.columns) if results.is_nab else list(MATRIX_COMPARISON_METRICS)
    )
    positions = np.arange(len(table))
    width = 0.8 / len(columns)

    figure = Figure(figsize=(10, 3.6), layout="constrained")
    axes = figure.subplots()
    for number, column in enumerate(columns):
        values = table[column].fillna(0.0).to_numpy()
        bars = axes.bar(positions + number * width, values, width=width, label=column)
        # A black outline marks the ensemble's bars among the members' bars.
        bars[0].set_edgecolor("black")
        bars[0].set_linewidth(1.2)
    axes.set_xticks(
        positions + width * (len(columns) - 1) / 2, list(table.index), rotation=20, ha="right"
    )
    axes.set_ylabel(
        "NAB score (0 = flag nothing, 100 = perfect)" if results.is_nab else "mean over entities"
    )
    comparison = results.summary["comparison"]
    axes.set_title(
        f"{results.data_format.upper()}: ensemble {comparison['ensemble']} against best "
        f"single detector {comparison['best_detector']} {comparison['best_detector_value']} "
        f"({comparison['metric']})"
    )
    axes.legend(fontsize="small")
    return figure
