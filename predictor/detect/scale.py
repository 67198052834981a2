"""The anomaly score scale: from fused surprise to a score in [0, 1], and its smoothing.

Detectors report surprise, ``-log10`` of a tail probability, which has no upper bound.
The published anomaly score maps it through ``1 - 2 ** (-surprise / 2)``: a tail
probability of 1e-2 scores 0.5, 1e-4 scores 0.75 and 1e-6 scores 0.875. The map is
strictly increasing, so the rows beyond the training range keep their order instead of
tying at 1, which would hide the worst of them from any ranking or threshold.

Surprise is smoothed over time with an exponentially weighted mean before the map. A
single noisy row then raises the score less than a run of unusual rows, which is what an
operator acts on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Surprise (-log10 p) at which the score is 0.5: p = 1e-2.
SURPRISE_AT_HALF_SCORE = 2.0
# An exponentially weighted mean with span s gives weight (1 - 2 / (s + 1)) ** k to the
# row k steps back; after this many spans the weight is below 1e-9 for every s >= 2, so
# scoring in several runs gives the scores of one run to that precision.
SMOOTHING_MEMORY_SPANS = 20


def surprise_to_score(surprise: np.ndarray) -> np.ndarray:
    """Map surprise ``-log10 p`` to a score in [0, 1]; strictly increasing, NaN kept.

    Examples
    --------
    >>> surprise_to_score(np.array([0.0, 2.0, 4.0])).tolist()
    [0.0, 0.5, 0.75]
    """
    surprise = np.clip(np.asarray(surprise, dtype="float64"), 0.0, None)
    return 1.0 - np.exp2(-surprise / SURPRISE_AT_HALF_SCORE)


def smooth_surprise(surprise: np.ndarray, span: int) -> np.ndarray:
    """Return the exponentially weighted trailing mean of ``surprise`` over ``span`` rows.

    Rows must be consecutive grid points in time order. The mean at row ``t`` reads rows
    at or before ``t`` only; NaN rows are skipped and stay NaN. ``span=1`` returns the
    input unchanged.

    Parameters
    ----------
    surprise : ndarray of shape (n_rows,)
    span : int
        The span of the weights, at least 1: the weight of the current row is
        ``2 / (span + 1)``.

    Examples
    --------
    >>> smooth_surprise(np.array([0.0, 3.0, 0.0]), span=2).round(3).tolist()
    [0.0, 2.25, 0.692]
    """
    if isinstance(span, bool) or not isinstance(span, (int, np.integer)) or span < 1:
        raise ValueError(f"span: expected an int of at least 1, got {span!r}")
    surprise = np.asarray(surprise, dtype="float64")
    if span == 1:
        return surprise
    smoothed = pd.Series(surprise).ewm(span=int(span), ignore_na=True).mean().to_numpy(copy=True)
    smoothed[np.isnan(surprise)] = np.nan
    return smoothed


def continue_smoothing(surprise: np.ndarray, span: int, previous: float) -> np.ndarray:
    """Continue the smoothing of :func:`smooth_surprise` from the smoothed value of the
    row just before ``surprise[0]``.

    After :func:`smoothing_memory_rows` rows of history the weighted mean is the
    recursion ``s_t = w * x_t + (1 - w) * s_{t-1}`` with ``w = 2 / (span + 1)`` to
    within 1e-9, so carrying ``previous`` over gives the scores of a run that reads the
    whole history, without scoring that history again. NaN rows stay NaN and leave the
    carried value as it was.

    Examples
    --------
    >>> continue_smoothing(np.array([3.0, np.nan, 0.0]), span=2, previous=0.0).round(3).tolist()
    [2.0, nan, 0.667]
    """
    surprise = np.asarray(surprise, dtype="float64")
    weight = 2.0 / (int(span) + 1)
    smoothed = np.full(len(surprise), np.nan)
    current = float(previous)
    for index, value in enumerate(surprise):
        if np.isnan(value):
            continue
        current = weight * value + (1.0 - weight) * current
        smoothed[index] = current
    return smoothed


def smoothing_memory_rows(span: int) -> int:
    """Return how many earlier rows the smoothed value of a row still depends on."""
    return 0 if span <= 1 else SMOOTHING_MEMORY_SPANS * int(span)
