"""Numenta Anomaly Benchmark (NAB) scoring, written from the rules published with NAB v1.1.

A detector writes an anomaly score in [0, 1] for every row of a data file, and a row is a
detection when its score is at least the threshold. Each file has labeled anomaly windows,
given as inclusive ``[start, end]`` timestamps that match rows exactly.

- The first ``min(floor(0.15 * n_rows), 750)`` rows of a file are a probationary period:
  detections there are ignored.
- In a window only the earliest detection counts. It is a true positive worth
  ``A_TP * sigma(y) / sigma(-1)``, where ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` and
  ``y = -(end - i + 1) / width`` for row ``i`` of a window ending at row ``end`` that is
  ``width`` rows long. So ``y`` runs from -1 on the first row to ``-1 / width`` on the
  last, and a detection on the first row is worth exactly ``A_TP``.
- A window without a detection costs ``A_FN`` (a false negative).
- Every detection outside the windows is a false positive worth ``A_FP * sigma(y)``, with
  ``y = (i - end) / (width - 1)`` measured from the end of the preceding window in that
  window's lengths. ``sigma(y)`` is taken as -1 when ``y > 3`` or when no window precedes
  the row, so a false positive costs between 0 (right after a window) and ``A_FP``.
- A file's raw score is the sum of these terms and a corpus's raw score is the sum over its
  files. The normalized score is ``100 * (raw - null) / (perfect - null)``, with
  ``null = -A_FN * n_windows`` (a detector that flags nothing) and
  ``perfect = A_TP * n_windows`` (one detection on the first row of every window).
- For each cost profile the threshold is the one that maximizes the corpus's raw score.

NAB and its scoring are introduced in A. Lavin and S. Ahmad, "Evaluating Real-time Anomaly
Detection Algorithms - the Numenta Anomaly Benchmark", IEEE ICMLA 2015 (arXiv:1510.03336).
The exact positions, the scaling of true positives by ``sigma(-1)`` and the normalization
above are the ones that reproduce, to two decimals, the scores NAB v1.1's own scorer gives
the published Numenta HTM results (the test suite checks this).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from predictor.exceptions import InputError

logger = logging.getLogger(__name__)

PROBATION_FRACTION = 0.15
"""Share of a file's first rows that is not scored."""

PROBATION_MAX_ROWS = 750
"""Upper bound of the probationary period in rows."""

FAR_AFTER_WINDOW = 3.0
"""Distance past a window, in window lengths, beyond which a false positive costs the full
``A_FP``."""

NOTHING_DETECTED_THRESHOLD = 1.1
"""Threshold reported when flagging nothing scores best; no score in [0, 1] reaches it."""

TIMESTAMP_COLUMN = "timestamp"
SCORE_COLUMN = "anomaly_score"

WindowBounds = tuple[pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True)
class CostProfile:
    """Weights of true positives, false negatives and false positives in a NAB score.

    Parameters
    ----------
    tp : float
        ``A_TP``, the worth of a window detected on its first row.
    fn : float
        ``A_FN``, the cost of a window without a detection.
    fp : float
        ``A_FP``, the cost of a false positive far from any window.
    """

    tp: float
    fn: float
    fp: float

    def __post_init__(self) -> None:
        for name in ("tp", "fn", "fp"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"CostProfile.{name} must be a finite number >= 0, got {value!r}")


PROFILES: dict[str, CostProfile] = {
    "standard": CostProfile(tp=1.0, fn=1.0, fp=0.11),
    "reward_low_FP": CostProfile(tp=1.0, fn=1.0, fp=0.22),
    "reward_low_FN": CostProfile(tp=1.0, fn=2.0, fp=0.11),
}
"""NAB's three application profiles by name."""


@dataclass(frozen=True)
class Detection:
    """A detection that contributes to a file's score.

    Attributes
    ----------
    row : int
        0-based position of the row in the file.
    timestamp : pandas.Timestamp
        Timestamp of the row.
    kind : {"tp", "fp"}
        ``"tp"`` for the earliest detection in a window, ``"fp"`` for one outside windows.
    weight : float
        The detection's term in the raw score (positive for a true positive, zero or
        negative for a false positive).
    """

    row: int
    timestamp: pd.Timestamp
    kind: Literal["tp", "fp"]
    weight: float


@dataclass(frozen=True)
class FileScore:
    """NAB score of one data file at one threshold.

    Attributes
    ----------
    raw_score : float
        Sum of the detections' weights minus ``A_FN`` for each missed window.
    tp : int
        Windows with a detection.
    fp : int
        Detections outside windows, after the probationary period.
    fn : int
        Windows without a detection.
    n_windows : int
        Windows that reach past the probationary period (``tp + fn``).
    probation_rows : int
        Rows at the start of the file that are not scored.
    detections : tuple of Detection
        The earliest detection of each detected window and every false positive, by row.
        Later detections inside a window add nothing and are not listed.
    """

    raw_score: float
    tp: int
    fp: int
    fn: int
    n_windows: int
    probation_rows: int
    detections: tuple[Detection, ...]


@dataclass(frozen=True)
class CorpusScore:
    """NAB score of a set of data files for one cost profile.

    Attributes
    ----------
    profile : CostProfile
        The weights used.
    threshold : float
        The threshold used: the caller's, or the one that maximizes ``raw_score``.
    normalized_score : float
        ``100 * (raw_score - null_score) / (perfect_score - null_score)``.
    raw_score : float
        Sum of the files' raw scores.
    null_score : float
        Raw score of a detector that flags nothing: ``-A_FN * n_windows``.
    perfect_score : float
        Raw score of a detector that flags the first row of each window and nothing else:
        ``A_TP * n_windows``.
    tp, fp, fn : int
        Counts summed over the files.
    n_windows : int
        Scored windows summed over the files.
    files : dict of str to FileScore
        Each file's score, by the key of ``results``.
    """

    profile: CostProfile
    threshold: float
    normalized_score: float
    raw_score: float
    null_score: float
    perfect_score: float
    tp: int
    fp: int
    fn: int
    n_windows: int
    files: dict[str, FileScore] = field(repr=False)


def scaled_sigmoid(y: float | np.ndarray) -> float | np.ndarray:
    """Compute NAB's scaled sigmoid ``2 / (1 + exp(5 y)) - 1``, and -1 where ``y > 3``.

    Parameters
    ----------
    y : float or array-like
        Relative position of a detection: from -1 to 0 inside a window, positive after it.

    Returns
    -------
    float or numpy.ndarray
        Values in (-1, 1): about 0.987 at ``y = -1``, 0 at ``y = 0``, -1 beyond ``y = 3``.
        A float for a scalar ``y``, an array otherwise.

    Examples
    --------
    >>> round(scaled_sigmoid(-1.0), 4), scaled_sigmoid(0.0), scaled_sigmoid(4.0)
    (0.9866, 0.0, -1.0)
    """
    values = np.asarray(y, dtype=float)
    # Clipping keeps exp() from overflowing; the clipped values are replaced by -1 anyway.
    result = 2.0 / (1.0 + np.exp(5.0 * np.minimum(values, FAR_AFTER_WINDOW))) - 1.0
    result = np.where(values > FAR_AFTER_WINDOW, -1.0, result)
    if result.ndim == 0:
        return float(result)
    return result


def probation_length(n_rows: int) -> int:
    """Return the number of leading rows NAB leaves unscored in a file of ``n_rows`` rows.

    Examples
    --------
    >>> probation_length(1000), probation_length(10000)
    (150, 750)
    """
    if n_rows < 0:
        raise ValueError(f"n_rows must be >= 0, got {n_rows!r}")
    return min(math.floor(PROBATION_FRACTION * n_rows), PROBATION_MAX_ROWS)


@dataclass(frozen=True)
class _FileLayout:
    """Per-row weights of one file that do not depend on the profile or the threshold.

    ``window[i]`` is the index of the window containing row ``i``, or -1. ``unit[i]`` is
    ``sigma(y) / sigma(-1)`` inside a window and ``sigma(y)`` (or -1) outside, so a
    detection on row ``i`` is worth ``A_TP * unit[i]`` or ``A_FP * unit[i]``.
    """

    timestamps: pd.DatetimeIndex
    scores: np.ndarray
    window: np.ndarray
    unit: np.ndarray
    probation_rows: int
    n_windows: int


def _resolve_profile(profile: CostProfile | str) -> CostProfile:
    if isinstance(profile, CostProfile):
        return profile
    if isinstance(profile, str) and profile in PROFILES:
        return PROFILES[profile]
    raise ValueError(
        f"profile must be a CostProfile or one of {sorted(PROFILES)}, got {profile!r}"
    )


def _parse_rows(
    timestamps: ArrayLike, scores: ArrayLike, source: str
) -> tuple[pd.DatetimeIndex, np.ndarray]:
    """Convert one file's timestamps and scores, checking lengths and the score range."""
    try:
        index = pd.DatetimeIndex(pd.to_datetime(timestamps))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: timestamps cannot be parsed: {error}") from None
    try:
        values = np.asarray(scores, dtype=float)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{source}: anomaly scores must be numbers: {error}") from None
    if values.shape != (len(index),):
        raise ValueError(
            f"{source}: scores must be one value per timestamp, got shape {values.shape} "
            f"for {len(index)} timestamps"
        )

    bad = np.flatnonzero(~np.isfinite(values) | (values < 0.0) | (values > 1.0))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"{source}: anomaly scores must be finite and in [0, 1], got {float(values[row])!r} "
            f"at row position {row} ({bad.size} invalid rows)"
        )
    return index, values


def _window_rows(
    index: pd.DatetimeIndex, windows: Sequence[Sequence[object]], source: str
) -> list[tuple[int, int]]:
    """Map each window's bounds to row positions and check that windows are ordered.

    Rows are taken in file order, which need not be time order: a bound maps to the first
    row with that timestamp.
    """
    rows: list[tuple[int, int]] = []
    for number, bounds in enumerate(windows):
        if len(bounds) != 2:
            raise ValueError(
                f"{source}: window {number} must be a [start, end] pair, got {bounds!r}"
            )
        positions = []
        for bound in bounds:
            matches = np.flatnonzero(index == pd.Timestamp(bound))
            if not matches.size:
                raise ValueError(
                    f"{source}: window {number} bound {bound!s} matches no row timestamp; "
                    "window bounds must equal row timestamps exactly"
                )
            # Some NAB files repeat timestamps around clock changes, so take the first row.
            positions.append(int(matches[0]))
        left, right = positions
        if right < left:
            raise ValueError(f"{source}: window {number} ends before it starts: {bounds!r}")
        if rows and left <= rows[-1][1]:
            raise ValueError(
                f"{source}: window {number} {bounds!r} overlaps or precedes window "
                f"{number - 1}; windows must be sorted and disjoint"
            )
        rows.append((left, right))
    return rows


def _layout(
    timestamps: ArrayLike,
    scores: ArrayLike,
    windows: Sequence[Sequence[object]],
    source: str,
) -> _FileLayout:
    """Validate one file's rows and windows and compute its per-row unit weights."""
    index, values = _parse_rows(timestamps, scores, source)

    n_rows = len(index)
    window = np.full(n_rows, -1, dtype=np.int64)
    # Rows before the first window count as far from any window.
    unit = np.full(n_rows, -1.0)
    window_rows = _window_rows(index, windows, source)
    max_tp = float(scaled_sigmoid(-1.0))
    for number, (left, right) in enumerate(window_rows):
        width = right - left + 1
        inside = np.arange(left, right + 1)
        window[left : right + 1] = number
        unit[left : right + 1] = scaled_sigmoid(-(right - inside + 1) / width) / max_tp

        stop = window_rows[number + 1][0] if number + 1 < len(window_rows) else n_rows
        after = np.arange(right + 1, stop)
        # NOTE: the rule divides by width - 1, which is 0 for a one-row window, so such a
        # window measures the distance in rows instead.
        unit[right + 1 : stop] = scaled_sigmoid((after - right) / max(width - 1, 1))

    probation_rows = probation_length(n_rows)
    # A window that ends inside the probationary period can be neither detected nor
    # missed, so it is left out of the counts (and of the null and perfect scores).
    # NOTE: none of the 27 NAB files in the reproduction test has such a window, so this
    # rule is not checked against NAB's scorer.
    n_windows = sum(1 for _, right in window_rows if right >= probation_rows)
    return _FileLayout(index, values, window, unit, probation_rows, n_windows)


def _score_layout(layout: _FileLayout, threshold: float, profile: CostProfile) -> FileScore:
    flagged = np.flatnonzero(layout.scores >= threshold)
    flagged = flagged[flagged >= layout.probation_rows]
    in_window = layout.window[flagged] >= 0

    fp_rows = flagged[~in_window]
    # np.unique returns the first occurrence of each window, and rows are ascending, so
    # these are the earliest detections.
    _, first = np.unique(layout.window[flagged[in_window]], return_index=True)
    tp_rows = flagged[in_window][first]

    weights = {int(row): profile.tp * float(layout.unit[row]) for row in tp_rows}
    weights.update({int(row): profile.fp * float(layout.unit[row]) for row in fp_rows})
    kinds: dict[int, Literal["tp", "fp"]] = {int(row): "tp" for row in tp_rows}
    kinds.update({int(row): "fp" for row in fp_rows})
    detections = tuple(
        Detection(row, layout.timestamps[row], kinds[row], weights[row]) for row in sorted(weights)
    )

    tp = len(tp_rows)
    fn = layout.n_windows - tp
    raw_score = math.fsum(weights.values()) - profile.fn * fn
    return FileScore(
        raw_score=raw_score,
        tp=tp,
        fp=len(fp_rows),
        fn=fn,
        n_windows=layout.n_windows,
        probation_rows=layout.probation_rows,
        detections=detections,
    )


def _optimal_threshold(layouts: Iterable[_FileLayout], profile: CostProfile) -> float:
    """Return the highest threshold among those that maximize the summed raw score.

    The raw score only changes where the threshold passes a row's score, so each distinct
    score is a candidate. Lowering the threshold to a row's score adds that row's false
    positive weight, or raises its window's term to the best weight detected so far. The
    cumulative sum of these changes, in descending score order, gives the raw score at
    every candidate in one pass.
    """
    event_scores: list[np.ndarray] = []
    event_changes: list[np.ndarray] = []
    base = 0.0
    for layout in layouts:
        base -= profile.fn * layout.n_windows
        scores = layout.scores[layout.probation_rows :]
        window = layout.window[layout.probation_rows :]
        unit = layout.unit[layout.probation_rows :]

        outside = window < 0
        event_scores.append(scores[outside])
        event_changes.append(profile.fp * unit[outside])
        for number in np.unique(window[~outside]):
            members = window == number
            order = np.argsort(-scores[members], kind="stable")
            best = np.maximum.accumulate(
                np.concatenate(([-profile.fn], profile.tp * unit[members][order]))
            )
            event_scores.append(scores[members][order])
            event_changes.append(np.diff(best))

    all_scores = np.concatenate([np.empty(0), *event_scores])
    all_changes = np.concatenate([np.empty(0), *event_changes])
    order = np.argsort(-all_scores, kind="stable")
    sorted_scores = all_scores[order]
    totals = base + np.cumsum(all_changes[order])

    # The raw score at threshold t includes every row scoring >= t, so it is read at the
    # last row of each run of equal scores.
    last_of_run = np.flatnonzero(np.append(np.diff(sorted_scores) != 0, True))
    thresholds = np.concatenate(([NOTHING_DETECTED_THRESHOLD], sorted_scores[last_of_run]))
    raw_scores = np.concatenate(([base], totals[last_of_run]))
    # argmax takes the first maximum, which is the highest threshold among equal scores.
    return float(thresholds[int(np.argmax(raw_scores))])


def score_file(
    timestamps: ArrayLike,
    scores: ArrayLike,
    windows: Sequence[Sequence[object]],
    threshold: float,
    profile: CostProfile | str,
) -> FileScore:
    """Score one data file's detections under the NAB rules.

    Parameters
    ----------
    timestamps : array-like of timestamp-like
        The file's row timestamps in file order. Repeats are allowed, as in some NAB
        files, and a window bound then refers to the first row with that timestamp.
    scores : array-like of float
        Anomaly score of each row, in [0, 1].
    windows : sequence of (start, end)
        Labeled anomaly windows, inclusive, sorted and disjoint; each bound must equal a
        row timestamp.
    threshold : float
        A row is a detection when its score is at least ``threshold``.
    profile : CostProfile or str
        The weights, or the name of one of :data:`PROFILES`.

    Returns
    -------
    FileScore
        The raw score, counts and contributing detections.

    Raises
    ------
    ValueError
        If the inputs break the contract above, naming the row or window at fault.

    Examples
    --------
    >>> times = pd.date_range("2024-01-01", periods=20, freq="min")
    >>> scores = [0.0] * 20
    >>> scores[10] = 0.9
    >>> result = score_file(times, scores, [(times[10], times[14])], 0.5, "standard")
    >>> result.tp, result.fp, result.fn, result.raw_score
    (1, 0, 0, 1.0)
    """
    resolved = _resolve_profile(profile)
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    return _score_layout(_layout(timestamps, scores, windows, "scores"), threshold, resolved)


def score_corpus(
    results: Mapping[str, pd.DataFrame],
    windows: Mapping[str, Sequence[Sequence[object]]],
    profile: CostProfile | str,
    threshold: float | None = None,
) -> CorpusScore:
    """Score a detector's results on a set of NAB data files for one cost profile.

    Parameters
    ----------
    results : mapping of str to pandas.DataFrame
        Detector output by NAB key (``"<category>/<name>.csv"``), each frame with columns
        ``timestamp`` and ``anomaly_score`` in row order.
    windows : mapping of str to sequence of (start, end)
        Labeled windows by NAB key, as returned by :func:`load_windows`. Keys without an
        entry in ``results`` are not scored.
    profile : CostProfile or str
        The weights, or the name of one of :data:`PROFILES`.
    threshold : float or None, default=None
        Detection threshold for every file. None picks the threshold that maximizes the
        summed raw score (the highest one when several do).

    Returns
    -------
    CorpusScore
        The normalized score with its parts and the threshold used.

    Raises
    ------
    ValueError
        If ``results`` is empty, a key has no windows, a frame lacks a column or breaks the
        contract of :func:`score_file`, or no window is scored so the score cannot be
        normalized.
    """
    resolved = _resolve_profile(profile)
    if threshold is not None and not math.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number or None, got {threshold!r}")
    if not results:
        raise ValueError("results is empty; expected at least one data file's scores")
    unlabeled = sorted(set(results) - set(windows))
    if unlabeled:
        raise ValueError(
            f"results has files without an entry in windows: {unlabeled}; "
            "check that the label file belongs to this data set"
        )

    layouts = {}
    for key, frame in results.items():
        missing = [c for c in (TIMESTAMP_COLUMN, SCORE_COLUMN) if c not in frame.columns]
        if missing:
            raise ValueError(
                f"{key}: results frame is missing columns {missing}; found {list(frame.columns)}"
            )
        layouts[key] = _layout(frame[TIMESTAMP_COLUMN], frame[SCORE_COLUMN], windows[key], key)

    if threshold is None:
        threshold = _optimal_threshold(layouts.values(), resolved)
    files = {key: _score_layout(layout, threshold, resolved) for key, layout in layouts.items()}

    n_windows = sum(score.n_windows for score in files.values())
    null_score = -resolved.fn * n_windows
    perfect_score = resolved.tp * n_windows
    if perfect_score == null_score:
        raise ValueError(
            f"cannot normalize: the perfect and null scores are both {null_score!r} "
            f"({n_windows} scored windows with profile {resolved!r}); the corpus needs a "
            "window after the probationary period and a nonzero tp or fn weight"
        )
    raw_score = math.fsum(score.raw_score for score in files.values())
    normalized = 100.0 * (raw_score - null_score) / (perfect_score - null_score)
    logger.debug(
        "NAB corpus scored: %d files, %d windows, threshold %.6g, raw %.4f, normalized %.2f",
        len(files),
        n_windows,
        threshold,
        raw_score,
        normalized,
    )
    return CorpusScore(
        profile=resolved,
        threshold=threshold,
        normalized_score=normalized,
        raw_score=raw_score,
        null_score=null_score,
        perfect_score=perfect_score,
        tp=sum(score.tp for score in files.values()),
        fp=sum(score.fp for score in files.values()),
        fn=sum(score.fn for score in files.values()),
        n_windows=n_windows,
        files=files,
    )


def load_windows(path: str | Path) -> dict[str, list[WindowBounds]]:
    """Read NAB's labeled windows (``labels/combined_windows.json``).

    Parameters
    ----------
    path : str or pathlib.Path
        JSON object mapping each NAB key (``"<category>/<name>.csv"``) to a list of
        ``[start, end]`` timestamp strings.

    Returns
    -------
    dict of str to list of (pandas.Timestamp, pandas.Timestamp)
        The windows of each file, in file order.

    Raises
    ------
    InputError
        If the file is missing, is not valid JSON, or an entry is not a list of
        ``[start, end]`` timestamps.
    """
    path = Path(path)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("window label file not found", path=str(path)) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"window label file is not valid JSON: {error}", path=str(path)) from None
    if not isinstance(content, dict):
        raise InputError(
            f"expected a JSON object keyed by data file, got {type(content).__name__}",
            path=str(path),
        )

    windows: dict[str, list[WindowBounds]] = {}
    for key, entries in content.items():
        if not isinstance(entries, list):
            raise InputError(
                f"windows of {key!r} must be a list of [start, end] pairs, got {entries!r}",
                path=str(path),
            )
        parsed: list[WindowBounds] = []
        for entry in entries:
            if not (isinstance(entry, list) and len(entry) == 2):
                raise InputError(
                    f"window of {key!r} must be a [start, end] pair, got {entry!r}",
                    path=str(path),
                )
            try:
                start, end = pd.Timestamp(entry[0]), pd.Timestamp(entry[1])
            except (TypeError, ValueError) as error:
                raise InputError(
                    f"window of {key!r} has an invalid timestamp in {entry!r}: {error}",
                    path=str(path),
                ) from None
            parsed.append((start, end))
        windows[key] = parsed
    return windows


def _read_result_file(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read as CSV: {error}", path=str(path)) from None
    missing = [c for c in (TIMESTAMP_COLUMN, SCORE_COLUMN) if c not in frame.columns]
    if missing:
        raise InputError(f"missing columns {missing}; found {list(frame.columns)}", path=str(path))

    timestamps = pd.to_datetime(frame[TIMESTAMP_COLUMN], errors="coerce")
    scores = pd.to_numeric(frame[SCORE_COLUMN], errors="coerce")
    for column, parsed in ((TIMESTAMP_COLUMN, timestamps), (SCORE_COLUMN, scores)):
        invalid = np.flatnonzero(parsed.isna().to_numpy())
        if invalid.size:
            position = int(invalid[0])
            raise InputError(
                f"expected a {'timestamp' if column == TIMESTAMP_COLUMN else 'number'}, "
                f"got {frame[column].iloc[position]!r}",
                path=str(path),
                row=position + 2,  # 1-based line number after the header line
                column=column,
            )
    return pd.DataFrame({TIMESTAMP_COLUMN: timestamps, SCORE_COLUMN: scores.astype(float)})


def load_results(results_dir: str | Path, detector: str) -> dict[str, pd.DataFrame]:
    """Read a detector's per-file results from NAB's results layout.

    Parameters
    ----------
    results_dir : str or pathlib.Path
        Folder holding ``<detector>/<category>/<detector>_<name>.csv`` files.
    detector : str
        Detector name, the folder name and the file name prefix.

    Returns
    -------
    dict of str to pandas.DataFrame
        Frames with columns ``timestamp`` (datetime) and ``anomaly_score`` (float), keyed
        ``"<category>/<name>.csv"`` as in the label files, sorted by key.

    Raises
    ------
    InputError
        If the detector folder is missing or contains no result file, or a file lacks a
        column or has an unparsable timestamp or score (naming the file's line).
    """
    detector_dir = Path(results_dir) / detector
    if not detector_dir.is_dir():
        raise InputError(
            f"results folder of detector {detector!r} not found", path=str(detector_dir)
        )

    prefix = f"{detector}_"
    results: dict[str, pd.DataFrame] = {}
    for path in sorted(detector_dir.glob("*/*.csv")):
        if not path.name.startswith(prefix):
            logger.warning(
                "NAB results: skipped %s, its name does not start with %r", path, prefix
            )
            continue
        key = f"{path.parent.name}/{path.name[len(prefix) :]}"
        results[key] = _read_result_file(path)
    if not results:
        raise InputError(
            f"no result files found; expected <category>/{prefix}<name>.csv files",
            path=str(detector_dir),
        )
    logger.debug("NAB results: read %d files of detector %s", len(results), detector)
    return results
