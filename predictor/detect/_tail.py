"""Tail probability of a score under its training distribution (peaks over threshold).

A raw detector score has no unit that other detectors share. Its tail probability under
the training scores does: ``p(s)`` is the chance that a training score is at least ``s``.
Inside the bulk of the training scores ``p`` is the empirical
``(1 + #{train >= s}) / (n + 1)``. Above the ``1 - tail_fraction`` quantile ``u`` it
follows an exponential tail fitted to the exceedances, ``p(s) = p(u) exp(-(s - u) / b)``
with ``b`` the mean exceedance, so scores beyond the training maximum keep getting
smaller probabilities instead of stopping at ``1 / (n + 1)``. The exponential is the
generalised Pareto tail with shape 0 used by peaks-over-threshold methods (Siffer et al.,
"Anomaly Detection in Streams with Extreme Value Theory", KDD 2017).
"""

from __future__ import annotations

import math

import numpy as np

# A mean exceedance below this fraction of the training standard deviation is treated as
# a tie at the threshold (quantized scores), and the scale falls back to it. An
# exponential tail has mean exceedance equal to its standard deviation and a normal tail
# above its 95 % quantile about 0.34 of it, so the floor does not bind on smooth scores.
STD_SCALE_FRACTION = 0.1


class TailProbability:
    """Map scores to ``-log10`` of their tail probability under training scores.

    Parameters
    ----------
    tail_fraction : float
        Share of the highest training scores that the exponential tail is fitted to.
    min_scale : float
        Floor of the exponential scale ``b``, in score units. It applies when the training
        scores are constant or the top ``tail_fraction`` of them are tied.

    Attributes
    ----------
    sorted_scores_ : ndarray
        The training scores in increasing order.
    threshold_ : float
        The score ``u`` above which the exponential tail applies.
    log10_p_threshold_ : float
        ``log10 p(u)``.
    scale_ : float
        The exponential scale ``b``.
    """

    def __init__(self, tail_fraction: float, min_scale: float) -> None:
        self.tail_fraction = tail_fraction
        self.min_scale = min_scale

    def fit(self, scores: np.ndarray) -> TailProbability:
        """Fit the empirical distribution and its exponential tail to finite ``scores``."""
        scores = np.sort(np.asarray(scores, dtype="float64"))
        if scores.size == 0 or not np.isfinite(scores).all():
            raise ValueError(
                f"scores: expected a non-empty array of finite training scores, got "
                f"{scores.size} scores with {int((~np.isfinite(scores)).sum())} non-finite"
            )
        n_scores = scores.size
        threshold = float(np.quantile(scores, 1.0 - self.tail_fraction))
        exceedances = scores[scores > threshold] - threshold
        mean_exceedance = float(exceedances.mean()) if exceedances.size else 0.0
        floor = max(self.min_scale, STD_SCALE_FRACTION * float(scores.std()))

        self.sorted_scores_ = scores
        self.threshold_ = threshold
        n_at_or_above = n_scores - int(np.searchsorted(scores, threshold, side="left"))
        self.log10_p_threshold_ = math.log10((1 + n_at_or_above) / (n_scores + 1))
        self.scale_ = max(mean_exceedance, floor)
        return self

    def surprise(self, scores: np.ndarray) -> np.ndarray:
        """Return ``-log10 p(s)`` for each score; NaN where the score is not finite.

        The result is 0 for scores at or below the training minimum and grows without
        bound above the training maximum. Higher means more anomalous.
        """
        scores = np.asarray(scores, dtype="float64")
        finite = np.isfinite(scores)
        n_scores = self.sorted_scores_.size

        n_at_or_above = n_scores - np.searchsorted(
            self.sorted_scores_, np.where(finite, scores, 0.0), side="left"
        )
        log10_p = np.log10((1.0 + n_at_or_above) / (n_scores + 1.0))
        in_tail = finite & (scores > self.threshold_)
        log10_p[in_tail] = self.log10_p_threshold_ - (scores[in_tail] - self.threshold_) / (
            self.scale_ * math.log(10.0)
        )
        log10_p[~finite] = np.nan
        # Adding 0.0 turns the -0.0 of p = 1 into 0.0.
        return -log10_p + 0.0
