"""Tests for the point-wise, range-based and event metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from predictor.evaluate.metrics import (
    BestF1,
    auc_pr,
    best_f1,
    event_recall,
    f1_at_threshold,
    false_alarms_per_day,
    label_events,
    lead_times,
    median_lead_time,
    range_auc_pr,
    threshold_without_labels,
    vus_pr,
)

# Two anomalous rows among four, used by the hand-worked cases below.
Y_SMALL = [0, 0, 1, 1]
SCORES_SMALL = [0.1, 0.6, 0.4, 0.9]


# --- point-wise metrics ------------------------------------------------------------


def test_best_f1_hand_worked():
    # Thresholds 0.9, 0.6, 0.4, 0.1 give F1 2/3, 1/2, 4/5, 2/3.
    result = best_f1(Y_SMALL, SCORES_SMALL)

    assert isinstance(result, BestF1)
    assert result.f1 == pytest.approx(0.8)
    assert result.threshold == pytest.approx(0.4)
    assert result.precision == pytest.approx(2 / 3)
    assert result.recall == pytest.approx(1.0)


def test_best_f1_tie_returns_highest_threshold():
    # Threshold 4 (precision 1, recall 1/2) and threshold 1 (1/2, 1) both give F1 2/3.
    result = best_f1([1, 0, 0, 1], [4.0, 3.0, 2.0, 1.0])

    assert result.f1 == pytest.approx(2 / 3)
    assert result.threshold == 4.0
    assert result.precision == pytest.approx(1.0)
    assert result.recall == pytest.approx(0.5)


def test_best_f1_tied_scores_flag_together():
    # The three rows at 0.5 are flagged together: precision 2/3, recall 1.
    result = best_f1([1, 1, 0, 0], [0.5, 0.5, 0.5, 0.1])

    assert result.f1 == pytest.approx(0.8)
    assert result.threshold == 0.5


def test_best_f1_matches_brute_force():
    rng = np.random.default_rng(0)
    y_true = (rng.random(300) < 0.1).astype(int)
    scores = rng.random(300) + 0.5 * y_true

    brute_force = max(
        f1_score(y_true, scores >= threshold, zero_division=0.0) for threshold in scores
    )
    result = best_f1(y_true, scores)

    assert result.f1 == pytest.approx(brute_force)
    assert f1_at_threshold(y_true, scores, result.threshold) == pytest.approx(result.f1)


def test_best_f1_accepts_bool_labels():
    result = best_f1(np.array(Y_SMALL, dtype=bool), np.array(SCORES_SMALL))

    assert result.f1 == pytest.approx(0.8)


def test_f1_at_threshold_hand_worked():
    # Threshold 0.5 flags 0.6 (normal) and 0.9 (anomalous): precision 1/2, recall 1/2.
    assert f1_at_threshold(Y_SMALL, SCORES_SMALL, 0.5) == pytest.approx(0.5)
    # Threshold 0.4 flags three rows with both anomalies: precision 2/3, recall 1.
    assert f1_at_threshold(Y_SMALL, SCORES_SMALL, 0.4) == pytest.approx(0.8)


def test_f1_at_threshold_above_all_scores_is_zero():
    assert f1_at_threshold(Y_SMALL, SCORES_SMALL, 1.5) == 0.0


def test_auc_pr_hand_worked():
    # Descending: 0.9 (hit, P=1, R=1/2), 0.6 (miss), 0.4 (hit, P=2/3, R=1).
    assert auc_pr(Y_SMALL, SCORES_SMALL) == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)


def test_auc_pr_perfect_ranking_is_one():
    assert auc_pr([0, 1, 1, 0, 0], [0.0, 0.7, 0.8, 0.1, 0.6]) == pytest.approx(1.0)


# --- range-AUC-PR and VUS-PR -------------------------------------------------------

# One event at rows 2-3. The detector's highest score is on row 1, just before it.
Y_EARLY = [0, 0, 1, 1, 0, 0]
SCORES_EARLY = [0.1, 0.9, 0.8, 0.2, 0.0, 0.05]


def _average_precision(recalls: list[float], precisions: list[float]) -> float:
    """Sum precision times recall gain, the step-wise AP written out for hand checks."""
    total, previous = 0.0, 0.0
    for recall, precision in zip(recalls, precisions, strict=True):
        total += (recall - previous) * precision
        previous = recall
    return total


def test_range_auc_pr_buffer_zero_hand_worked():
    # Row 1 is a false positive. Rows 2 and 3 bring recall to 1/2 and 1.
    expected = _average_precision([0.0, 0.5, 1.0], [0.0, 0.5, 2 / 3])

    assert range_auc_pr(Y_EARLY, SCORES_EARLY, 0) == pytest.approx(expected)
    assert range_auc_pr(Y_EARLY, SCORES_EARLY, 1) == pytest.approx(expected)


def test_range_auc_pr_buffer_four_hand_worked():
    # Buffer 4: two rows on each side, weights sqrt(1 - 1/4) next to the event and
    # sqrt(1 - 2/4) one row further. Row 1 is one row before the event.
    near = math.sqrt(0.75)
    positives = 2 + near / 2  # |P| plus half of the flagged buffer weight
    true_positives = [near, near + 1, near + 2]
    recalls = [min(tp / positives, 1.0) for tp in true_positives]
    precisions = [tp / flagged for tp, flagged in zip(true_positives, [1, 2, 3], strict=True)]

    expected = _average_precision(recalls, precisions)

    assert recalls[-1] == 1.0
    assert range_auc_pr(Y_EARLY, SCORES_EARLY, 4) == pytest.approx(expected)


def test_range_auc_pr_rewards_early_flag():
    by_buffer = [range_auc_pr(Y_EARLY, SCORES_EARLY, buffer) for buffer in (0, 2, 4)]

    assert by_buffer[0] < by_buffer[1] < by_buffer[2]


def test_vus_pr_is_mean_over_buffers():
    expected = np.mean([range_auc_pr(Y_EARLY, SCORES_EARLY, buffer) for buffer in range(5)])

    assert vus_pr(Y_EARLY, SCORES_EARLY, max_buffer=4) == pytest.approx(expected)
    assert vus_pr(Y_EARLY, SCORES_EARLY, max_buffer=4) > auc_pr(Y_EARLY, SCORES_EARLY)
    assert vus_pr(Y_EARLY, SCORES_EARLY, max_buffer=0) == pytest.approx(
        auc_pr(Y_EARLY, SCORES_EARLY)
    )


def test_range_auc_pr_zero_buffer_one_event():
    rng = np.random.default_rng(1)
    y_true = np.zeros(400, dtype=int)
    y_true[150:180] = 1
    scores = rng.random(400) + 0.4 * y_true

    assert range_auc_pr(y_true, scores, 0) == pytest.approx(auc_pr(y_true, scores))


def test_range_auc_pr_scales_recall_by_events_found():
    # Events at row 0 and rows 3-4, a false positive on row 2. Descending: row 3 and
    # row 4 find one of two events (recall 1/3 and 2/3 of rows, times 1/2), row 2 is
    # false, row 0 finds the second event.
    y_true = [1, 0, 0, 1, 1, 0]
    scores = [0.3, 0.0, 0.5, 0.9, 0.8, 0.2]
    expected = _average_precision([1 / 6, 1 / 3, 1 / 3, 1.0], [1.0, 1.0, 2 / 3, 3 / 4])

    assert range_auc_pr(y_true, scores, 0) == pytest.approx(expected)
    assert auc_pr(y_true, scores) == pytest.approx(
        _average_precision([1 / 3, 2 / 3, 2 / 3, 1.0], [1.0, 1.0, 2 / 3, 3 / 4])
    )


def test_vus_pr_perfect_detector_is_one():
    # Events close to each other and to both ends, so buffers overlap and are clipped.
    y_true = np.zeros(60, dtype=int)
    y_true[[0, 1, 10, 12, 13, 40, 59]] = 1

    assert vus_pr(y_true, y_true.astype(float), max_buffer=30) == pytest.approx(1.0)


def test_vus_pr_random_scores_rank_below_signal():
    rng = np.random.default_rng(2)
    y_true = np.zeros(2000, dtype=int)
    for start in (300, 900, 1500):
        y_true[start : start + 20] = 1
    noise = rng.random(2000)

    random_vus = vus_pr(y_true, noise, max_buffer=20)
    signal_vus = vus_pr(y_true, noise + 0.5 * y_true, max_buffer=20)

    assert random_vus < 0.2
    assert signal_vus > 0.6


# --- event metrics -----------------------------------------------------------------

# Events at rows 3-4 and 7-9. Flags on row 1 (two rows early), row 9 (two rows late)
# and row 11 (after every event).
Y_EVENTS = [0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0]
FLAGS = [0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1]


def test_label_events_runs_of_ones():
    assert label_events(Y_EVENTS) == [(3, 4), (7, 9)]
    assert label_events([1, 1, 0, 1]) == [(0, 1), (3, 3)]
    assert label_events([0, 0, 0]) == []


def test_lead_times_with_early_window():
    assert lead_times(Y_EVENTS, FLAGS, early_rows=2) == [2, -2]


def test_lead_times_without_early_window():
    assert lead_times(Y_EVENTS, FLAGS, early_rows=0) == [None, -2]


def test_lead_times_first_flag_counts():
    flags = [0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]

    assert lead_times(Y_EVENTS, flags, early_rows=5) == [2, None]


def test_lead_times_early_window_stops_at_previous_event():
    # The flag on row 1 is inside the first event, so it cannot warn of the second.
    assert lead_times([1, 1, 0, 1], [0, 1, 0, 0], early_rows=3) == [-1, None]


def test_median_lead_time_over_detected_events():
    assert median_lead_time(Y_EVENTS, FLAGS, early_rows=2) == 0.0
    assert median_lead_time(Y_EVENTS, FLAGS, early_rows=0) == -2.0


def test_median_lead_time_none_when_nothing_detected():
    assert median_lead_time(Y_EVENTS, [0] * 12) is None
    assert median_lead_time([0, 0, 0], [1, 0, 1]) is None


def test_event_recall_counts_detected_events():
    assert event_recall(Y_EVENTS, FLAGS, early_rows=2) == 1.0
    assert event_recall(Y_EVENTS, FLAGS, early_rows=0) == 0.5
    assert event_recall(Y_EVENTS, [0] * 12) == 0.0


def test_false_alarms_per_day_hand_worked():
    # Onsets on rows 1, 9 and 11. 12 rows at 6 rows a day are 2 days.
    assert false_alarms_per_day(Y_EVENTS, FLAGS, rows_per_day=6, early_rows=2) == 0.5
    assert false_alarms_per_day(Y_EVENTS, FLAGS, rows_per_day=6, early_rows=0) == 1.0


def test_false_alarms_per_day_counts_onsets_not_rows():
    y_true = [0] * 10
    flags = [1, 1, 1, 0, 0, 1, 1, 0, 0, 1]

    assert false_alarms_per_day(y_true, flags, rows_per_day=10) == 3.0


def test_false_alarms_early_onset_counts():
    # The alarm starts on row 0, before the event's window, and lasts into the event.
    y_true = [0, 0, 0, 1, 1, 0]
    flags = [1, 1, 1, 1, 0, 0]

    assert false_alarms_per_day(y_true, flags, rows_per_day=6, early_rows=1) == 1.0
    assert event_recall(y_true, flags, early_rows=1) == 1.0


# --- label-free threshold ----------------------------------------------------------


def test_threshold_without_labels_quantile():
    assert threshold_without_labels([0.0, 1.0, 2.0, 3.0, 4.0], 0.25) == 3.0


def test_threshold_without_labels_flags_target_share_of_training():
    train_scores = np.random.default_rng(3).normal(size=2000)

    threshold = threshold_without_labels(train_scores, 0.01)
    flagged_share = np.mean(train_scores >= threshold)

    assert abs(flagged_share - 0.01) <= 1 / train_scores.size


@pytest.mark.parametrize("rate", [0, 1, -0.1, 1.5, float("nan"), True, "0.1"])
def test_threshold_without_labels_rejects_rate(rate):
    with pytest.raises(ValueError, match="target_false_alarm_rate must be a share"):
        threshold_without_labels([0.0, 1.0, 2.0], rate)


@pytest.mark.parametrize(
    ("train_scores", "message"),
    [
        ([], "train_scores must contain at least one row"),
        ([0.0, float("nan")], r"train_scores must be finite, got nan at row 1"),
        ([[0.0, 1.0]], "train_scores must be one-dimensional"),
    ],
)
def test_threshold_without_labels_rejects_scores(train_scores, message):
    with pytest.raises(ValueError, match=message):
        threshold_without_labels(train_scores, 0.1)


# --- input validation --------------------------------------------------------------

POINT_METRICS = [
    pytest.param(best_f1, id="best_f1"),
    pytest.param(auc_pr, id="auc_pr"),
    pytest.param(vus_pr, id="vus_pr"),
    pytest.param(lambda y, s: range_auc_pr(y, s, 2), id="range_auc_pr"),
    pytest.param(lambda y, s: f1_at_threshold(y, s, 0.5), id="f1_at_threshold"),
]


@pytest.mark.parametrize("metric", POINT_METRICS)
@pytest.mark.parametrize(
    ("y_true", "scores", "message"),
    [
        ([[0, 1]], [0.1, 0.2], "y_true must be one-dimensional"),
        ([], [], "y_true must contain at least one row"),
        ([0, float("nan")], [0.1, 0.2], "y_true must not contain NaN, found one at row 1"),
        ([0, 2], [0.1, 0.2], r"y_true must contain only 0 and 1, got 2\.0 at row 1"),
        (["a", "b"], [0.1, 0.2], "y_true must contain only 0 and 1, got dtype"),
        ([0, 1], [0.1], r"scores must have one value per row of y_true \(2\), got 1"),
        ([0, 1], [0.1, float("inf")], "scores must be finite, got inf at row 1"),
        ([0, 1], [[0.1, 0.2]], "scores must be one-dimensional"),
        ([0, 1], ["x", "y"], "scores must be numeric"),
        ([0, 0], [0.1, 0.2], "y_true contains no anomalous rows"),
    ],
)
def test_point_metrics_reject_invalid_input(metric, y_true, scores, message):
    with pytest.raises(ValueError, match=message):
        metric(y_true, scores)


@pytest.mark.parametrize("threshold", [float("nan"), float("inf"), None, "0.5", True])
def test_f1_at_threshold_rejects_threshold(threshold):
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        f1_at_threshold(Y_SMALL, SCORES_SMALL, threshold)


@pytest.mark.parametrize("buffer", [-1, 1.5, True])
def test_range_metrics_reject_buffer(buffer):
    with pytest.raises(ValueError, match="max_buffer must be a non-negative integer"):
        vus_pr(Y_SMALL, SCORES_SMALL, max_buffer=buffer)
    with pytest.raises(ValueError, match="buffer_rows must be a non-negative integer"):
        range_auc_pr(Y_SMALL, SCORES_SMALL, buffer)


EVENT_METRICS = [
    pytest.param(lambda y, f, e: lead_times(y, f, e), id="lead_times"),
    pytest.param(lambda y, f, e: median_lead_time(y, f, e), id="median_lead_time"),
    pytest.param(lambda y, f, e: event_recall(y, f, e), id="event_recall"),
    pytest.param(lambda y, f, e: false_alarms_per_day(y, f, 1440, e), id="false_alarms_per_day"),
]


@pytest.mark.parametrize("metric", EVENT_METRICS)
@pytest.mark.parametrize(
    ("y_true", "flags", "early_rows", "message"),
    [
        ([0, 1], [0], 0, r"flags must have one value per row of y_true \(2\), got 1"),
        ([0, 1], [0, 0.5], 0, r"flags must contain only 0 and 1, got 0\.5 at row 1"),
        ([0, 1], [0, float("nan")], 0, "flags must not contain NaN, found one at row 1"),
        ([0, 3], [0, 1], 0, "y_true must contain only 0 and 1"),
        ([0, 1], [0, 1], -1, "early_rows must be a non-negative integer"),
        ([0, 1], [0, 1], 2.5, "early_rows must be a non-negative integer"),
    ],
)
def test_event_metrics_reject_invalid_input(metric, y_true, flags, early_rows, message):
    with pytest.raises(ValueError, match=message):
        metric(y_true, flags, early_rows)


def test_event_recall_rejects_labels_without_events():
    with pytest.raises(ValueError, match="y_true contains no anomalous rows"):
        event_recall([0, 0, 0], [0, 1, 0])


@pytest.mark.parametrize("rows_per_day", [0, -1.0, float("nan"), float("inf"), None])
def test_false_alarms_per_day_rejects_rows_per_day(rows_per_day):
    with pytest.raises(ValueError, match="rows_per_day must be a positive finite number"):
        false_alarms_per_day(Y_EVENTS, FLAGS, rows_per_day)


# --- real labels -------------------------------------------------------------------


@pytest.fixture(scope="module")
def smd_labels(shared_data):
    """Test labels of SMD machine-2-1: 23,694 rows, 1,170 anomalous in 13 events."""
    return np.loadtxt(shared_data / "smd" / "test_label" / "machine-2-1.txt").astype(int)


def _interpretation_ranges(shared_data) -> list[tuple[int, int]]:
    """Read the expert-blamed row ranges of machine-2-1, whose end row is exclusive."""
    path = shared_data / "smd" / "interpretation_label" / "machine-2-1.txt"
    ranges = []
    for line in path.read_text().splitlines():
        start, end = line.split(":")[0].split("-")
        ranges.append((int(start), int(end) - 1))
    return sorted(ranges)


@pytest.mark.shared_data
def test_smd_events_match_interpretation_ranges(smd_labels, shared_data):
    assert label_events(smd_labels) == _interpretation_ranges(shared_data)


@pytest.mark.shared_data
def test_smd_labels_as_scores_are_perfect(smd_labels):
    scores = smd_labels.astype(float)

    assert best_f1(smd_labels, scores).f1 == pytest.approx(1.0)
    assert auc_pr(smd_labels, scores) == pytest.approx(1.0)
    assert vus_pr(smd_labels, scores) == pytest.approx(1.0)
    assert event_recall(smd_labels, smd_labels) == 1.0
    assert lead_times(smd_labels, smd_labels) == [0] * 13
    assert false_alarms_per_day(smd_labels, smd_labels, rows_per_day=1440) == 0.0


@pytest.mark.shared_data
def test_smd_random_scores_near_chance(smd_labels):
    anomaly_share = smd_labels.mean()
    flag_all_f1 = 2 * anomaly_share / (1 + anomaly_share)
    scores = np.random.default_rng(4).random(smd_labels.size)

    result = best_f1(smd_labels, scores)

    # Flagging every row reaches flag_all_f1, so the best F1 is at least that. Random
    # ranking gains little above it.
    assert result.f1 >= flag_all_f1 - 1e-12
    assert result.f1 < flag_all_f1 + 0.02
    assert auc_pr(smd_labels, scores) == pytest.approx(anomaly_share, abs=0.01)
    assert vus_pr(smd_labels, scores) < anomaly_share + 0.05
