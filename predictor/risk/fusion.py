"""Fusion of the anomaly score and the threshold-crossing probability into one risk."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def fuse_risk(
    anomaly_score: ArrayLike, crossing_probability: ArrayLike | None = None
) -> np.ndarray:
    """Combine the anomaly score and the crossing probability into a failure-risk.

    The fused risk is the noisy-OR ``1 - (1 - a) * (1 - p)``: the chance that at least
    one of the two signals fires if they were independent probabilities. It is at least
    as large as each input, and higher means worse.

    Parameters
    ----------
    anomaly_score : array-like of float in [0, 1]
        Ensemble anomaly score per scoring time (higher is more anomalous). NaN means no
        score, for example while features are warming up.
    crossing_probability : array-like of float in [0, 1] or None, default=None
        Probability that a thresholded metric crosses its threshold within the horizon,
        with the same shape as ``anomaly_score``. NaN or None means no forecast and
        counts as 0.

    Returns
    -------
    ndarray of float
        Risk in [0, 1] with the shape of ``anomaly_score``. Where ``anomaly_score`` is NaN
        the risk is the crossing probability alone, and NaN when that is missing too.
        The level logic treats NaN as unknown.

    Raises
    ------
    ValueError
        If a finite value lies outside [0, 1], a value is infinite, or the shapes differ.

    Notes
    -----
    The fused score is not calibrated: it is on the probability scale but is not the
    observed failure frequency. Where labeled failures exist, a calibration step maps it
    to a probability of failure within the horizon.

    Examples
    --------
    >>> from predictor.risk import fuse_risk
    >>> fuse_risk([0.5, 0.2, float("nan")], [0.5, float("nan"), 0.3]).round(3).tolist()
    [0.75, 0.2, 0.3]
    """
    anomaly = _as_unit_interval(anomaly_score, "anomaly_score")
    if crossing_probability is None:
        return anomaly.copy()
    probability = _as_unit_interval(crossing_probability, "crossing_probability")
    if probability.shape != anomaly.shape:
        raise ValueError(
            f"crossing_probability: expected the shape of anomaly_score {anomaly.shape}, "
            f"got {probability.shape}"
        )

    p = np.nan_to_num(probability, nan=0.0)
    risk = 1.0 - (1.0 - anomaly) * (1.0 - p)
    only_forecast = np.isnan(anomaly) & ~np.isnan(probability)
    risk[only_forecast] = probability[only_forecast]
    return risk


def _as_unit_interval(values: ArrayLike, name: str) -> np.ndarray:
    array = np.array(values, dtype=float)
    if np.isinf(array).any():
        raise ValueError(f"{name}: expected finite values in [0, 1] or NaN, got an infinite value")
    finite = array[np.isfinite(array)]
    if finite.size and (finite.min() < 0.0 or finite.max() > 1.0):
        bad = finite[(finite < 0.0) | (finite > 1.0)][0]
        raise ValueError(f"{name}: expected values in [0, 1] or NaN, got {float(bad)!r}")
    return array
