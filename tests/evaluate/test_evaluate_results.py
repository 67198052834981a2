"""Reading backtest output folders back: summary checks, scores, labeled events, lead times."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from predictor.evaluate import metrics
from predictor.evaluate.results import (
    MATRIX_METRICS,
    alarm_onsets,
    entity_table,
    lead_time_table,
    load_backtest,
    metric_table,
)
from predictor.exceptions import InputError

NAB_KEY = "realKnownCause/ec2_request_latency_system_failure.csv"


@pytest.fixture
def smd_copy(report_inputs, tmp_path):
    """A writable copy of the SMD backtest output, for breaking it on purpose."""
    return shutil.copytree(report_inputs.smd_backtest, tmp_path / "backtest")


def _edit_summary(folder, edit) -> None:
    path = folder / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    edit(summary)
    path.write_text(json.dumps(summary), encoding="utf-8")


def test_load_smd_backtest(report_inputs):
    results = load_backtest(report_inputs.smd_backtest)

    assert results.data_format == "smd"
    assert not results.is_nab
    assert results.series() == ["machine-1-2"]
    assert results.detectors[0] == "ensemble"
    assert {"iforest", "pca_reconstruction", "l2_norm"} <= set(results.detectors)
    assert results.data_dir == report_inputs.smd_data
    assert results.notes == []
    assert results.calibration is None


def test_smd_scores_have_one_row_per_test_row(report_inputs):
    results = load_backtest(report_inputs.smd_backtest)

    for detector in results.detectors:
        scores = results.scores("machine-1-2", detector)
        assert scores["row"].tolist() == list(range(6000))
        assert scores["anomaly_score"].between(0, 1).all()


def test_smd_events_match_label_runs(report_inputs):
    results = load_backtest(report_inputs.smd_backtest)
    labels = np.loadtxt(report_inputs.smd_data / "test_label" / "machine-1-2.txt", dtype=int)
    runs = metrics.label_events(labels)

    events = results.events("machine-1-2", results.scores("machine-1-2"))

    assert [event.reference for event in events] == [start for start, _ in runs]
    assert [event.end for event in events] == [end for _, end in runs]
    assert [event.start for event in events] == [start - 60 for start, _ in runs]


def test_lead_times_agree_with_backtest_median(report_inputs):
    results = load_backtest(report_inputs.smd_backtest)
    summary_median = results.summary["per_entity"]["machine-1-2"]["ensemble"]["median_lead_rows"]

    leads = lead_time_table(results)

    assert leads["event"].tolist() == [1, 2, 3]
    assert np.nanmedian(leads["lead_rows"]) == summary_median
    detected = leads.dropna(subset=["first_alarm_row"])
    assert (detected["lead_rows"] == detected["reference_row"] - detected["first_alarm_row"]).all()


def test_metric_tables_follow_summary(report_inputs):
    results = load_backtest(report_inputs.smd_backtest)
    summary = results.summary

    table = metric_table(results)
    per_entity = entity_table(results)

    assert list(table.columns) == list(MATRIX_METRICS)
    assert table.loc["ensemble", "auc_pr"] == summary["mean"]["ensemble"]["auc_pr"]
    assert table.loc["l2_norm", "best_f1"] == summary["mean"]["l2_norm"]["best_f1"]
    entity_row = summary["per_entity"]["machine-1-2"]["ensemble"]
    assert per_entity.loc["machine-1-2", "vus_pr"] == entity_row["vus_pr"]


def test_load_nab_backtest(report_inputs):
    results = load_backtest(report_inputs.nab_backtest)
    windows = json.loads(
        (report_inputs.nab_backtest.parent / "nab/labels/combined_windows.json").read_text()
    )[NAB_KEY]

    scores = results.scores(NAB_KEY)
    events = results.events(NAB_KEY, scores)

    assert results.is_nab
    assert results.series() == [NAB_KEY]
    assert list(metric_table(results).columns) == ["standard", "reward_low_FP", "reward_low_FN"]
    assert entity_table(results).empty
    assert len(events) == len(windows) == 3
    first_window = [pd.Timestamp(value) for value in windows[0]]
    assert scores["timestamp"].iloc[events[0].start] == first_window[0]
    assert scores["timestamp"].iloc[events[0].end] == first_window[1]
    # The lead time is measured to the labeled anomaly, 2014-03-14 09:06.
    assert scores["timestamp"].iloc[events[0].reference] == pd.Timestamp("2014-03-14 09:06")


def test_missing_data_folder_gives_note(smd_copy):
    _edit_summary(smd_copy, lambda summary: summary.update(data="/nonexistent/smd"))

    results = load_backtest(smd_copy)

    assert results.data_dir is None
    assert "'/nonexistent/smd' was not found" in results.notes[0]
    assert lead_time_table(results).empty


def test_data_folder_override(smd_copy, report_inputs):
    _edit_summary(smd_copy, lambda summary: summary.update(data="/nonexistent/smd"))

    results = load_backtest(smd_copy, data_dir=report_inputs.smd_data)

    assert results.notes == []
    assert len(lead_time_table(results)) == 3


def test_missing_folder_raises(tmp_path):
    with pytest.raises(InputError, match=r"nope: backtest output folder not found"):
        load_backtest(tmp_path / "nope")


def test_missing_summary_raises(tmp_path):
    with pytest.raises(InputError, match=r"summary\.json: summary\.json not found"):
        load_backtest(tmp_path)


def test_invalid_summary_json_raises(tmp_path):
    (tmp_path / "summary.json").write_text("{not json", encoding="utf-8")

    with pytest.raises(InputError, match=r"summary\.json: invalid JSON"):
        load_backtest(tmp_path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda summary: summary.pop("format"), r"missing key 'format'"),
        (lambda summary: summary.update(format="csv"), r"key 'format': expected one of"),
        (lambda summary: summary.pop("mean"), r"key 'mean': expected an object of detectors"),
        (
            lambda summary: summary["mean"]["knn"].pop("auc_pr"),
            r"key 'mean\.knn': missing \['auc_pr'\]",
        ),
        (lambda summary: summary.update(per_entity={}), r"key 'per_entity': expected a non"),
        (
            lambda summary: summary.update(calibration={"mean": {}}),
            r"key 'calibration\.per_entity' is missing",
        ),
        (
            lambda summary: summary.update(
                calibration={
                    "per_entity": {},
                    "mean": {"brier": 0.1, "brier_base_rate": 0.2},
                    "reliability": [{"count": 3}],
                }
            ),
            r"key 'calibration\.reliability\[0\]': missing \['bin_low'",
        ),
        (
            lambda summary: summary.update(
                calibration={"per_entity": {}, "mean": {"brier": 0.1}, "reliability": []}
            ),
            r"key 'calibration\.mean': missing \['brier_base_rate'\]",
        ),
        (
            lambda summary: summary.update(
                calibration={"per_entity": {"m-1": 0.1}, "mean": {}, "reliability": []}
            ),
            r"key 'calibration\.per_entity\.m-1': missing \['brier'",
        ),
    ],
)
def test_malformed_summary_raises(smd_copy, edit, message):
    _edit_summary(smd_copy, edit)

    with pytest.raises(InputError, match=message):
        load_backtest(smd_copy)


def test_bad_score_file_raises(smd_copy):
    results = load_backtest(smd_copy)
    path = smd_copy / "knn" / "machine-1-2.csv"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[5] = "4,high"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    with pytest.raises(InputError, match=r"row 6, column 'anomaly_score': expected a finite"):
        results.scores("machine-1-2", "knn")


def test_missing_score_column_raises(smd_copy):
    results = load_backtest(smd_copy)
    pd.DataFrame({"row": [0, 1], "score": [0.1, 0.2]}).to_csv(
        smd_copy / "machine-1-2.csv", index=False
    )

    with pytest.raises(InputError, match=r"column 'anomaly_score': missing column"):
        results.scores("machine-1-2")


def test_label_count_mismatch_raises(smd_copy, report_inputs, tmp_path):
    data = shutil.copytree(report_inputs.smd_data, tmp_path / "data")
    label_path = data / "test_label" / "machine-1-2.txt"
    label_path.write_text("0\n1\n", encoding="utf-8")
    results = load_backtest(smd_copy, data_dir=data)

    with pytest.raises(InputError, match=r"2 labels for 6000 scored rows"):
        results.events("machine-1-2", results.scores("machine-1-2"))


@pytest.mark.parametrize(
    ("scores", "onsets"),
    [
        ([0.1, 0.8, 0.9, 0.2, 0.7], [1, 4]),
        ([0.75, 0.1, 0.69], [0]),
        ([0.1, 0.2], []),
    ],
)
def test_alarm_onsets(scores, onsets):
    assert alarm_onsets(np.array(scores), 0.7).tolist() == onsets
