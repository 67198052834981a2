"""Figures of a backtest and of the risk store draw what their inputs hold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import PathCollection
from matplotlib.patches import Rectangle

from predictor.config import load_settings
from predictor.evaluate import figures
from predictor.evaluate.results import (
    alarm_onsets,
    lead_time_table,
    load_backtest,
    metric_table,
)
from predictor.report import read_store_history

NAB_KEY = "realKnownCause/ec2_request_latency_system_failure.csv"
# A small hand-made reliability table: three bins, the middle one empty.
CALIBRATION = {
    "method": "isotonic",
    "fit_fraction": 0.5,
    "horizon_rows": 60,
    "per_entity": {
        "m-1": {"brier": 0.02, "brier_base_rate": 0.03, "base_rate": 0.03, "n_eval": 900}
    },
    "mean": {"brier": 0.02, "brier_base_rate": 0.03},
    "reliability": [
        {
            "bin_low": 0.0,
            "bin_high": 0.1,
            "count": 800,
            "mean_predicted": 0.02,
            "observed_rate": 0.01,
        },
        {
            "bin_low": 0.1,
            "bin_high": 0.5,
            "count": 0,
            "mean_predicted": None,
            "observed_rate": None,
        },
        {
            "bin_low": 0.5,
            "bin_high": 1.0,
            "count": 100,
            "mean_predicted": 0.7,
            "observed_rate": 0.6,
        },
    ],
}


def _spans(axes) -> list[Rectangle]:
    """Return the shaded spans (axvspan draws a Rectangle in matplotlib >= 3.9)."""
    return [patch for patch in axes.patches if isinstance(patch, Rectangle)]


def _line(axes, label: str):
    (line,) = [line for line in axes.get_lines() if line.get_label().startswith(label)]
    return line


@pytest.mark.parametrize("layout", ["smd", "nab"])
def test_backtest_scores_marks_events_and_onsets(report_inputs, layout):
    results = load_backtest(getattr(report_inputs, f"{layout}_backtest"))
    series = results.series()[0]
    scores = results.scores(series)

    figure = figures.backtest_scores_figure(results, series)

    axes = figure.axes[0]
    assert len(_spans(axes)) == len(results.events(series, scores)) == 3
    onsets = _line(axes, "score reaches 0.7")
    assert len(onsets.get_xdata()) == len(alarm_onsets(scores["anomaly_score"]))
    assert len(_line(axes, "ensemble score").get_ydata()) == len(scores)
    assert axes.get_title().startswith(f"{series}: ensemble anomaly score, 3 labeled")


def test_comparison_bars_follow_metric_table(report_inputs):
    results = load_backtest(report_inputs.smd_backtest)
    table = metric_table(results)

    figure = figures.comparison_figure(results)

    heights = [patch.get_height() for patch in figure.axes[0].patches]
    expected = [*table["best_f1"], *table["auc_pr"]]
    assert heights == pytest.approx(expected)
    labels = [label.get_text() for label in figure.axes[0].get_xticklabels()]
    assert labels == results.detectors


def test_nab_comparison_has_one_bar_per_profile(report_inputs):
    results = load_backtest(report_inputs.nab_backtest)

    figure = figures.comparison_figure(results)

    assert len(figure.axes[0].patches) == 3 * len(results.detectors)
    assert "NAB score" in figure.axes[0].get_ylabel()


def test_lead_time_figure_marks_missed_events():
    leads = pd.DataFrame(
        {
            "series": ["m-1", "m-1", "m-2"],
            "event": [1, 2, 1],
            "lead_rows": [12.0, np.nan, -3.0],
        }
    )

    figure = figures.lead_time_figure(leads)

    axes = figure.axes[0]
    assert sorted(patch.get_width() for patch in axes.patches) == [-3.0, 12.0]
    assert len(_line(axes, "missed (1)").get_xdata()) == 1
    assert [label.get_text() for label in axes.get_yticklabels()] == ["m-1 #1", "m-1 #2", "m-2 #1"]


def test_lead_time_figure_of_backtest(report_inputs):
    leads = lead_time_table(load_backtest(report_inputs.nab_backtest))

    figure = figures.lead_time_figure(leads)

    labels = [label.get_text() for label in figure.axes[0].get_yticklabels()]
    assert labels[0] == "ec2_request_latency_system_failure #1"


def test_reliability_figure_plots_each_bin():
    figure = figures.reliability_figure(CALIBRATION)

    top, bottom = figure.axes
    (points,) = [item for item in top.collections if isinstance(item, PathCollection)]
    offsets = np.ma.getdata(points.get_offsets())
    assert offsets[0].tolist() == [0.02, 0.01]
    assert offsets[2].tolist() == [0.7, 0.6]
    assert [patch.get_height() for patch in bottom.patches] == [800, 0, 100]
    assert "Brier score 0.0200, base-rate predictor 0.0300" in top.get_title()


def test_store_risk_marks_failures_and_hook_calls(report_env):
    settings = load_settings()
    history = read_store_history(settings)

    figure = figures.store_risk_figure(history, "ec2-latency", settings.levels)

    axes = figure.axes[0]
    calls = history.hook_calls[history.hook_calls["component"] == "ec2-latency"]
    assert len(calls) >= 1
    assert len(_line(axes, "hook call").get_xdata()) == len(calls)
    # Only the first of the three labeled failures lies in the scored period.
    assert len(_spans(axes)) == 1
    assert len(_line(axes, "failure-risk").get_ydata()) == len(history.scores)
