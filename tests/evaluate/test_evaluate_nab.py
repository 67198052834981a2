"""NAB scoring: hand-worked cases, threshold search, loaders and the published scores.

Hand-worked values use the identity ``2 / (1 + exp(5 y)) - 1 == tanh(-2.5 y)``, so the
expected numbers below are computed independently of the scaled sigmoid under test.
A file has, unless a test states otherwise, 20 rows (probationary period:
floor(0.15 * 20) = 3 rows, so rows 0-2 are not scored) and one window on rows 10-14
(5 rows wide).
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pandas as pd
import pytest

from predictor.evaluate import (
    PROFILES,
    CostProfile,
    load_results,
    load_windows,
    probation_length,
    scaled_sigmoid,
    score_corpus,
    score_file,
)
from predictor.exceptions import InputError

STANDARD = PROFILES["standard"]
TIMES = pd.date_range("2024-03-01", periods=20, freq="5min")
WINDOW = (TIMES[10], TIMES[14])
# sigma(-1) = tanh(2.5): the weight of a detection on a window's first row before scaling.
MAX_TP = math.tanh(2.5)


def flagged(*rows: int, n_rows: int = 20) -> np.ndarray:
    scores = np.zeros(n_rows)
    scores[list(rows)] = 1.0
    return scores


def frame(times: pd.DatetimeIndex, scores: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"timestamp": times, "anomaly_score": scores})


# ---------------------------------------------------------------- scaled sigmoid


def test_scaled_sigmoid_known_points():
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661429815)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(0.25) == pytest.approx(math.tanh(-0.625))
    # At y = 3 the curve is still just above -1. Past 3 it is exactly -1.
    assert scaled_sigmoid(3.0) == pytest.approx(-0.9999993882)
    assert scaled_sigmoid(3.0001) == -1.0
    assert scaled_sigmoid(1000.0) == -1.0


def test_scaled_sigmoid_array_input():
    values = scaled_sigmoid(np.array([-1.0, 0.0, 5.0]))
    assert isinstance(values, np.ndarray)
    np.testing.assert_allclose(values, [math.tanh(2.5), 0.0, -1.0])


def test_probation_length_rule():
    assert probation_length(20) == 3  # floor(3.0)
    assert probation_length(33) == 4  # floor(4.95)
    assert probation_length(5000) == 750
    assert probation_length(22695) == 750  # capped at 750 rows


# ---------------------------------------------------------------- single files


def test_early_detection_scores_full_tp():
    # Row 10 is the window's first row: y = -(14 - 10 + 1) / 5 = -1, worth A_TP * 1 = 1.
    result = score_file(TIMES, flagged(10), [WINDOW], 0.5, STANDARD)
    assert result.raw_score == pytest.approx(1.0)
    assert (result.tp, result.fp, result.fn) == (1, 0, 0)
    assert [(d.row, d.kind) for d in result.detections] == [(10, "tp")]


def test_detection_at_window_end():
    # Row 14 is the last row: y = -(14 - 14 + 1) / 5 = -0.2, so the weight is
    # tanh(0.5) / tanh(2.5) = 0.46212 / 0.98661 = 0.46839: small but still positive.
    result = score_file(TIMES, flagged(14), [WINDOW], 0.5, STANDARD)
    assert result.raw_score == pytest.approx(0.4683868439)
    assert result.tp == 1


def test_only_earliest_detection_counts():
    # Rows 12, 13 and 14 are all flagged, but only row 12 counts:
    # y = -(14 - 12 + 1) / 5 = -0.6, weight tanh(1.5) / tanh(2.5) = 0.91743.
    result = score_file(TIMES, flagged(12, 13, 14), [WINDOW], 0.5, STANDARD)
    assert result.raw_score == pytest.approx(0.9174286804)
    assert (result.tp, result.fp, result.fn) == (1, 0, 0)
    assert [d.row for d in result.detections] == [12]


def test_fp_before_any_window():
    # Row 5 precedes every window, so it costs the full A_FP. With no window in the file
    # there is nothing to miss: standard gives -0.11 and reward_low_FP -0.22.
    standard = score_file(TIMES, flagged(5), [], 0.5, "standard")
    low_fp = score_file(TIMES, flagged(5), [], 0.5, "reward_low_FP")
    assert standard.raw_score == pytest.approx(-0.11)
    assert low_fp.raw_score == pytest.approx(-0.22)
    assert (standard.tp, standard.fp, standard.fn) == (0, 1, 0)


def test_fp_right_after_window():
    # Row 15 is one row past the window end: y = (15 - 14) / (5 - 1) = 0.25,
    # sigma = tanh(-0.625) = -0.55460, times A_FP 0.11 = -0.061006.
    # With the window detected on row 10 (+1) the file scores 0.938994.
    result = score_file(TIMES, flagged(10, 15), [WINDOW], 0.5, STANDARD)
    assert result.raw_score == pytest.approx(1.0 - 0.0610059695)
    assert (result.tp, result.fp, result.fn) == (1, 1, 0)
    fp = result.detections[-1]
    assert (fp.row, fp.kind) == (15, "fp")
    assert fp.weight == pytest.approx(-0.0610059695)


def test_fp_cost_grows_with_distance():
    # 40 rows (probation 6). Row 26: y = (26 - 14) / 4 = 3, sigma = tanh(-7.5) = -0.9999994;
    # row 27: y = 3.25 > 3, so the full A_FP.
    times = pd.date_range("2024-03-01", periods=40, freq="5min")
    window = [(times[10], times[14])]
    at_three = score_file(times, flagged(26, n_rows=40), window, 0.5, STANDARD)
    beyond = score_file(times, flagged(27, n_rows=40), window, 0.5, STANDARD)
    # Both miss the window (-1).
    assert at_three.raw_score == pytest.approx(-1.0 - 0.11 * 0.9999993882)
    assert at_three.raw_score > -1.11
    assert beyond.raw_score == -1.11


def test_fp_after_second_window_measured_from_it():
    # Windows on rows 4-6 (width 3) and 10-14. Row 8 is 2 rows past the first window:
    # y = 2 / (3 - 1) = 1, sigma = tanh(-2.5) = -0.98661, times 0.11 = -0.108528.
    # Row 16 is 2 rows past the second: y = 2 / 4 = 0.5, sigma = tanh(-1.25) = -0.84828,
    # times 0.11 = -0.093311. Both windows are missed: -2.
    windows = [(TIMES[4], TIMES[6]), WINDOW]
    result = score_file(TIMES, flagged(8, 16), windows, 0.5, STANDARD)
    expected = -2.0 + 0.11 * math.tanh(-2.5) + 0.11 * math.tanh(-1.25)
    assert result.raw_score == pytest.approx(expected)
    assert (result.tp, result.fp, result.fn) == (0, 2, 2)


def test_missed_window_costs_fn():
    # Nothing flagged: -A_FN, which is 1 for standard and 2 for reward_low_FN.
    scores = np.zeros(20)
    assert score_file(TIMES, scores, [WINDOW], 0.5, "standard").raw_score == -1.0
    result = score_file(TIMES, scores, [WINDOW], 0.5, "reward_low_FN")
    assert result.raw_score == -2.0
    assert (result.tp, result.fp, result.fn) == (0, 0, 1)
    assert result.detections == ()


def test_probation_detections_ignored():
    # Rows 0-2 are in the probationary period: flagging them changes nothing, so the
    # window is missed (-1) and no false positive is counted.
    result = score_file(TIMES, flagged(0, 1, 2), [WINDOW], 0.5, STANDARD)
    assert result.probation_rows == 3
    assert result.raw_score == -1.0
    assert (result.tp, result.fp, result.fn) == (0, 0, 1)


def test_window_inside_probation_not_counted():
    # 100 rows (probation 15). Window A on rows 2-5 ends inside the probationary period,
    # so it can be neither detected nor missed and is not counted. Window B on rows 10-20
    # (width 11) starts inside it: the flag on row 12 is ignored and the flag on row 16
    # counts with y = -(20 - 16 + 1) / 11 = -5/11, weight tanh(25/22) / tanh(2.5).
    times = pd.date_range("2024-03-01", periods=100, freq="5min")
    windows = [(times[2], times[5]), (times[10], times[20])]
    result = score_file(times, flagged(3, 12, 16, n_rows=100), windows, 0.5, STANDARD)
    assert result.n_windows == 1
    assert (result.tp, result.fp, result.fn) == (1, 0, 0)
    assert result.raw_score == pytest.approx(math.tanh(25 / 22) / MAX_TP)


def test_detection_weights_sum_to_raw_score():
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=20)
    result = score_file(TIMES, scores, [WINDOW], 0.6, "reward_low_FN")
    weights = sum(d.weight for d in result.detections)
    assert result.raw_score == pytest.approx(weights - 2.0 * result.fn)
    assert result.tp + result.fn == result.n_windows == 1


def test_threshold_is_inclusive():
    scores = np.zeros(20)
    scores[10] = 0.5
    assert score_file(TIMES, scores, [WINDOW], 0.5, STANDARD).tp == 1
    assert score_file(TIMES, scores, [WINDOW], 0.5000001, STANDARD).tp == 0


def test_repeated_timestamp_bound_takes_first_row():
    # Rows 10 and 11 share a timestamp (as after a clock change in some NAB files). The
    # window starts at the first of them, so a flag on row 10 is on the first row: +1.
    times = TIMES.tolist()
    times[11] = times[10]
    result = score_file(times, flagged(10), [(times[10], times[14])], 0.5, STANDARD)
    assert result.raw_score == pytest.approx(1.0)


# ---------------------------------------------------------------- corpus and threshold


def test_normalization_null_and_perfect():
    # Two files, three windows: null = -3, perfect = +3.
    times = TIMES
    windows = {
        "a/one.csv": [WINDOW],
        "a/two.csv": [(times[4], times[6]), (times[15], times[18])],
    }
    nothing = {key: frame(times, np.zeros(20)) for key in windows}
    perfect = {
        "a/one.csv": frame(times, flagged(10)),
        "a/two.csv": frame(times, flagged(4, 15)),
    }

    null_result = score_corpus(nothing, windows, STANDARD, threshold=0.5)
    assert null_result.null_score == -3.0
    assert null_result.perfect_score == 3.0
    assert null_result.normalized_score == 0.0

    perfect_result = score_corpus(perfect, windows, STANDARD)
    assert perfect_result.threshold == 1.0
    assert perfect_result.raw_score == pytest.approx(3.0)
    assert perfect_result.normalized_score == pytest.approx(100.0)
    assert (perfect_result.tp, perfect_result.fp, perfect_result.fn) == (3, 0, 0)


def test_normalized_score_worked_example():
    # One file detected at its window end (0.468387) and one window missed (-1) give
    # raw = -0.531613. Two windows give null = -2 and perfect = 2, so
    # 100 * (-0.531613 + 2) / 4 = 36.7097.
    windows = {"a/one.csv": [WINDOW], "a/two.csv": [WINDOW]}
    results = {
        "a/one.csv": frame(TIMES, flagged(14)),
        "a/two.csv": frame(TIMES, np.zeros(20)),
    }
    result = score_corpus(results, windows, "standard", threshold=0.5)
    assert result.raw_score == pytest.approx(0.4683868439 - 1.0)
    assert result.normalized_score == pytest.approx(36.7096711)
    assert set(result.files) == set(windows)


def test_optimal_threshold_hand_case():
    # Row 5 scores 0.9 (before the window), row 12 scores 0.7, all others 0.1.
    #   threshold 1.1: nothing flagged                     -1
    #   threshold 0.9: row 5 only                          -1 - 0.11 = -1.11
    #   threshold 0.7: rows 5 and 12   -0.11 + tanh(1.5) / tanh(2.5) =  0.807429
    #   threshold 0.1: every scored row: window found on row 10 (+1), rows 3-9 cost
    #     7 * 0.11 = 0.77, rows 15-19 cost 0.11 * 4.3398 = 0.4774     -0.247
    # so 0.7 is best.
    scores = np.full(20, 0.1)
    scores[5] = 0.9
    scores[12] = 0.7
    result = score_corpus({"a/x.csv": frame(TIMES, scores)}, {"a/x.csv": [WINDOW]}, STANDARD)
    assert result.threshold == 0.7
    assert result.raw_score == pytest.approx(-0.11 + 0.9174286804)


def test_optimal_threshold_prefers_highest_tie():
    # Lowering the threshold from 0.7 to 0.6 only adds row 13, a later row of a window
    # already detected. Both thresholds score the same, and the higher one is reported.
    scores = np.zeros(20)
    scores[12] = 0.7
    scores[13] = 0.6
    result = score_corpus({"a/x.csv": frame(TIMES, scores)}, {"a/x.csv": [WINDOW]}, STANDARD)
    assert result.threshold == 0.7


def test_optimal_threshold_when_nothing_pays():
    # 100 rows (probation 15), window on rows 90-94. Threshold 0.9 flags only row 20, a
    # false positive: -1.11. Threshold 0 flags everything: the window is found (+1), but
    # rows 15-89 cost 75 * 0.11 = 8.25. Flagging nothing (-1) is best.
    times = pd.date_range("2024-03-01", periods=100, freq="5min")
    scores = np.zeros(100)
    scores[20] = 0.9
    windows = {"a/x.csv": [(times[90], times[94])]}
    result = score_corpus({"a/x.csv": frame(times, scores)}, windows, STANDARD)
    assert result.threshold > 1.0
    assert result.normalized_score == 0.0
    assert result.fp == 0


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_optimal_threshold_matches_exhaustive_search(profile):
    # The one-pass search must agree with scoring every distinct score as a threshold.
    rng = np.random.default_rng(7)
    times = pd.date_range("2024-03-01", periods=120, freq="5min")
    windows = {
        "c/a.csv": [(times[30], times[41]), (times[80], times[95])],
        "c/b.csv": [(times[60], times[70])],
        "c/c.csv": [],
    }
    results = {}
    for key in windows:
        scores = rng.beta(0.5, 3.0, size=120).round(2)
        results[key] = frame(times, scores)

    best = score_corpus(results, windows, profile)
    candidates = np.unique(np.concatenate([f["anomaly_score"] for f in results.values()]))
    exhaustive = max(
        score_corpus(results, windows, profile, threshold=float(t)).raw_score for t in candidates
    )
    nothing = score_corpus(results, windows, profile, threshold=1.1).raw_score
    assert best.raw_score == pytest.approx(max(exhaustive, nothing))
    fixed = score_corpus(results, windows, profile, threshold=best.threshold)
    assert fixed.raw_score == pytest.approx(best.raw_score)


# ---------------------------------------------------------------- invalid input


def test_score_file_rejects_invalid_scores():
    scores = np.zeros(20)
    scores[7] = np.nan
    with pytest.raises(ValueError, match=r"finite and in \[0, 1\].*row position 7"):
        score_file(TIMES, scores, [WINDOW], 0.5, STANDARD)
    scores[7] = 1.5
    with pytest.raises(ValueError, match=r"got 1\.5 at row position 7"):
        score_file(TIMES, scores, [WINDOW], 0.5, STANDARD)


def test_score_file_rejects_length_mismatch():
    with pytest.raises(ValueError, match="one value per timestamp"):
        score_file(TIMES, np.zeros(19), [WINDOW], 0.5, STANDARD)


def test_score_file_rejects_unmatched_bound():
    bound = TIMES[10] + pd.Timedelta(minutes=1)
    with pytest.raises(ValueError, match=r"window 0 bound .*matches no row timestamp"):
        score_file(TIMES, np.zeros(20), [(bound, TIMES[14])], 0.5, STANDARD)


def test_score_file_rejects_overlapping_windows():
    windows = [(TIMES[4], TIMES[10]), (TIMES[10], TIMES[14])]
    with pytest.raises(ValueError, match=r"window 1 .*sorted and disjoint"):
        score_file(TIMES, np.zeros(20), windows, 0.5, STANDARD)


def test_score_file_rejects_reversed_window():
    with pytest.raises(ValueError, match="window 0 ends before it starts"):
        score_file(TIMES, np.zeros(20), [(TIMES[14], TIMES[10])], 0.5, STANDARD)


def test_unknown_profile_name():
    with pytest.raises(ValueError, match=r"profile must be .*'reward_low_FN'.*got 'strict'"):
        score_file(TIMES, np.zeros(20), [WINDOW], 0.5, "strict")


def test_cost_profile_rejects_negative_weight():
    with pytest.raises(ValueError, match=r"CostProfile.fp must be a finite number >= 0"):
        CostProfile(tp=1.0, fn=1.0, fp=-0.1)


def test_score_corpus_rejects_unlabeled_file():
    results = {"a/x.csv": frame(TIMES, np.zeros(20))}
    with pytest.raises(ValueError, match=r"without an entry in windows: \['a/x.csv'\]"):
        score_corpus(results, {"a/y.csv": []}, STANDARD)


def test_score_corpus_rejects_missing_column():
    results = {"a/x.csv": pd.DataFrame({"timestamp": TIMES, "score": np.zeros(20)})}
    with pytest.raises(ValueError, match=r"a/x.csv: results frame is missing .*anomaly_score"):
        score_corpus(results, {"a/x.csv": [WINDOW]}, STANDARD)


def test_score_corpus_without_windows_cannot_normalize():
    results = {"a/x.csv": frame(TIMES, np.zeros(20))}
    with pytest.raises(ValueError, match="cannot normalize"):
        score_corpus(results, {"a/x.csv": []}, STANDARD)


# ---------------------------------------------------------------- loaders


def write_results(root, detector, key, times, scores):
    category, name = key.split("/")
    folder = root / detector / category
    folder.mkdir(parents=True, exist_ok=True)
    frame(times, scores).to_csv(folder / f"{detector}_{name}", index=False)


def test_load_round_trip(tmp_path):
    labels = tmp_path / "windows.json"
    labels.write_text(
        json.dumps(
            {
                "cat_a/my_file.csv": [
                    [f"{TIMES[10]}.000000", f"{TIMES[14]}.000000"],
                ],
                "cat_b/other.csv": [],
            }
        )
    )
    write_results(tmp_path / "results", "my_detector", "cat_a/my_file.csv", TIMES, flagged(10))
    write_results(tmp_path / "results", "my_detector", "cat_b/other.csv", TIMES, flagged(5))

    windows = load_windows(labels)
    results = load_results(tmp_path / "results", "my_detector")

    assert windows["cat_a/my_file.csv"] == [WINDOW]
    assert sorted(results) == ["cat_a/my_file.csv", "cat_b/other.csv"]
    assert list(results["cat_a/my_file.csv"].columns) == ["timestamp", "anomaly_score"]
    # Window found on its first row (+1) and one false positive before any window (-0.11).
    # With one window null = -1, perfect = 1 and normalized = 100 * 1.89 / 2 = 94.5.
    result = score_corpus(results, windows, "standard", threshold=0.5)
    assert result.raw_score == pytest.approx(0.89)
    assert result.normalized_score == pytest.approx(94.5)


def test_load_results_reports_bad_score_line(tmp_path):
    write_results(tmp_path, "det", "cat/f.csv", TIMES, np.zeros(20))
    path = tmp_path / "det" / "cat" / "det_f.csv"
    lines = path.read_text().splitlines()
    lines[4] = lines[4].rsplit(",", 1)[0] + ",high"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"det_f.csv, row 5, column 'anomaly_score'"):
        load_results(tmp_path, "det")


def test_load_results_missing_detector(tmp_path):
    with pytest.raises(InputError, match="results folder of detector 'nope' not found"):
        load_results(tmp_path, "nope")


def test_load_results_missing_column(tmp_path):
    folder = tmp_path / "det" / "cat"
    folder.mkdir(parents=True)
    (folder / "det_f.csv").write_text("timestamp,value\n2024-01-01 00:00:00,1\n")
    with pytest.raises(InputError, match=r"missing columns \['anomaly_score'\]"):
        load_results(tmp_path, "det")


def test_load_windows_rejects_malformed(tmp_path):
    path = tmp_path / "windows.json"
    path.write_text('{"a/x.csv": [["2024-01-01 00:00:00"]]}')
    with pytest.raises(InputError, match=r"window of 'a/x.csv' must be a \[start, end\] pair"):
        load_windows(path)
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_windows(path)
    with pytest.raises(InputError, match="window label file not found"):
        load_windows(tmp_path / "absent.json")


# ---------------------------------------------------------------- published results

# NAB's official scorer gives the Numenta HTM detector these scores on the 27 files of the
# shared NAB sample, with the threshold re-optimized per profile on those files.
OFFICIAL = {
    "standard": (65.95, 0.5555),
    "reward_low_FP": (58.92, 0.5985),
    "reward_low_FN": (71.26, 0.5042),
}


@pytest.fixture(scope="module")
def numenta_results(shared_data):
    nab = shared_data / "nab"
    windows = load_windows(nab / "labels" / "combined_windows.json")
    results = load_results(nab / "results", "numenta")
    return results, windows


@pytest.mark.parametrize("profile", sorted(OFFICIAL))
def test_reproduces_official_numenta_scores(numenta_results, profile):
    results, windows = numenta_results
    assert len(results) == 27

    started = time.perf_counter()
    result = score_corpus(results, windows, profile)
    elapsed = time.perf_counter() - started

    expected_score, expected_threshold = OFFICIAL[profile]
    assert round(result.normalized_score, 2) == expected_score
    assert round(result.threshold, 4) == expected_threshold
    assert result.n_windows == 38
    assert elapsed < 5.0
