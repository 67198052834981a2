"""Anomaly ensemble: PyOD detectors of several families and a robust z-score, fused."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from predictor.detect._members import CHANNEL, MEMBER_NAMES, PYOD_MEMBERS, ROBUST_Z
from predictor.detect._tail import TailProbability
from predictor.detect.base import (
    DetectorTagsMixin,
    check_float_param,
    check_int_param,
    robust_center_scale,
    scale_floor,
)
from predictor.detect.channel import CHANNEL_FEATURES, channel_scores, fit_column_tails
from predictor.detect.scale import surprise_to_score
from predictor.detect.statistical import RobustZScore
from predictor.exceptions import DegenerateMemberWarning
from predictor.features import feature_metric

logger = logging.getLogger(__name__)

DEFAULT_MEMBERS = ("iforest", "knn", "knn_log", "channel")
# Factors on member surprises before fusion (others keep 1). At 0.7 a row that only Isolation
# Forest or KNN flags needs a tail probability about 7 times smaller than 1e-2 to reach the
# fused surprise of a 1-in-100 row of the other members. One setting for the NAB, SMD and ASD
# corpora, chosen on all three (docs/quality.md).
DEFAULT_MEMBER_WEIGHTS = {"iforest": 0.7, "knn": 0.7}
# Combinations of the member surprises of a row: "max" keeps the most surprised member
# (the smallest tail probability, Tippett's method), and "mean" is proportional to
# Fisher's statistic -2 * sum(ln p).
FUSIONS = ("max", "mean")
DEFAULT_FUSION = "max"
# Floors of each column's training spread: absolute in the units of X, and relative to
# the level of the column's metric; see scale_floor.
MIN_SCALE = 1e-3
MIN_RELATIVE_SCALE = 1e-3
# Scaled inputs are clipped so a value far outside training (a floor-scaled constant
# column that moves) stays finite inside the distance and projection members.
MAX_ABS_SCALED = 1e6
# Exponential tail scales used when training scores are constant or tied at the top:
# 1 robust standard deviation for the z-score member, half a decade of surprise for the
# channel member (whose score is already a surprise) and for the fused score. PyOD members
# with constant training scores are dropped instead.
ROBUST_Z_TAIL_MIN_SCALE = 1.0
CHANNEL_TAIL_MIN_SCALE = 0.5
FUSED_TAIL_MIN_SCALE = 0.5
PYOD_TAIL_MIN_SCALE = 1e-12
# Robust z above which a metric is named as a driver.
DRIVER_MIN_Z = 3.0


class AnomalyEnsemble(DetectorTagsMixin, BaseEstimator):
    """Fuse several anomaly detectors on a common tail-probability scale.

    Each member is fitted on the training rows, and its raw score is mapped to its tail
    probability under its own training scores. The surprises ``-log10 p`` are combined per
    row (by default the largest is kept) and mapped once more through the training
    distribution of the combined surprise into a score in [0, 1]. Higher scores mean more
    anomalous (worse) throughout.

    Parameters
    ----------
    members : sequence of str, default=("iforest", "knn", "knn_log", "channel")
        Detectors to combine. PyOD detectors: ``"iforest"`` (isolation), ``"ecod"`` and
        ``"copod"`` (empirical distribution), ``"knn"``, ``"lof"`` and ``"abod"``
        (proximity), ``"knn_log"`` (KNN on log-compressed scaled inputs,
        ``sign(x) * log(1 + |x|)``), ``"pca"`` (linear projection), ``"hbos"``
        (histogram). Statistical: ``"robust_z"``, a :class:`~predictor.detect.RobustZScore`
        of the residual columns, and ``"channel"``, the mean of the 3 largest per-column
        surprises over the value and residual columns, each column's robust z-score under
        its own training tail (:mod:`predictor.detect.channel`).
    n_estimators : int, default=100
        Trees of the isolation forest.
    n_neighbors : int, default=5
        Neighbors of ``knn``, ``knn_log``, ``lof`` and ``abod``, capped at the fitted rows
        minus one.
    max_train_rows : int, default=5000
        Maximum number of rows that ``knn``, ``knn_log``, ``lof``, ``abod``, ``ecod`` and
        ``copod`` are fitted on, drawn as one seeded random subset when training has more.
        The other members use all rows.
    tail_fraction : float, default=0.05
        Share of the highest training scores that each exponential tail is fitted to.
    member_weights : mapping of str to float or None, default=None
        Factor in (0, 1] on a member's surprise before the members are combined, by
        member name; members not named keep 1, and names that are not among ``members``
        have no effect. A weight ``w`` turns the member's tail probability ``p`` into
        ``p ** w``, so a member whose surprises carry more false alarms counts less than
        the others. None means :data:`DEFAULT_MEMBER_WEIGHTS` (``iforest`` and ``knn``
        0.7) and ``{}`` weighs every member 1. :meth:`member_surprise` returns the
        surprises before weighting.
    fusion : {"max", "mean"}, default="max"
        Combination of the member surprises of a row. ``"max"`` keeps the most surprised
        member, so one member that recognises an anomaly is not diluted by members that
        carry little information about that series (on a single-metric stream, for
        example). ``"mean"`` averages them, so a row scores higher the more members find it
        surprising. The second tail mapping calibrates either combination on the training rows.
    random_state : int, RandomState instance or None, default=None
        Seeds the isolation forest, the PCA solver and the row subset.

    Attributes
    ----------
    members_ : dict of str to estimator
        The fitted members that were kept, in the order of ``members``.
    dropped_members_ : dict of str to str
        Members dropped in :meth:`fit`, each with the reason.
    tails_ : dict of str to TailProbability
        Each kept member's tail fitted on its training scores.
    fusion_ : str
        The ``fusion`` the ensemble was fitted with.
    weights_ : ndarray of shape (n_members_kept,)
        The weight of each kept member, in the order of ``members_``.
    fused_tail_ : TailProbability
        The tail of the fused training surprise.
    channel_tails_ : list of TailProbability
        With the ``"channel"`` member: one tail per scored column of its robust z-scores,
        fitted on the training rows. The member itself (in ``members_``) is the
        :class:`~predictor.detect.RobustZScore` whose ``score_columns_`` it scores.
    zscore_ : RobustZScore
        The robust z-score detector fitted on the unscaled training rows; it provides the
        drivers even when ``"robust_z"`` is not a member.
    center_, scale_ : ndarray of shape (n_features_in_,)
        Training median and robust scale (IQR based) used to scale inputs of PyOD members.
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit`, when ``X`` had string column names.

    See Also
    --------
    RobustZScore : The statistical member.

    Notes
    -----
    Score scale. For a member with training scores ``t_1..t_n`` the tail probability of a
    score ``s`` is ``p = (1 + #{t_i >= s}) / (n + 1)`` up to the ``1 - tail_fraction``
    quantile ``u``, and ``p(u) * exp(-(s - u) / b)`` above it, where ``b`` is the mean
    exceedance over ``u`` (a peaks-over-threshold tail). A member's surprise is
    ``-log10 p``. The fused surprise of a row is the largest (``fusion="max"``) or the mean
    (``fusion="mean"``) surprise over the members whose score is finite for that row; it
    goes through the same tail mapping fitted on the
    fused training surprises, giving ``p_fused``, and
    ``score = 1 - 2 ** (log10(p_fused) / 2)``. So ``p_fused = 1e-2`` scores 0.5,
    ``1e-4`` scores 0.75 and ``1e-6`` scores 0.875; rows beyond the training range keep
    their order instead of tying at 1. The score is NaN only for a row on which no member
    returned a finite score.

    Inputs. NaN cells are allowed: PyOD members see each column scaled by the training
    median and IQR and NaN replaced by the training median, and the robust z-score treats
    a missing cell as normal. Infinite values raise ValueError. PyOD's ``labels_`` and
    ``threshold_`` are never used, so ``contamination`` caps nothing: every row that lies
    beyond the training distribution gets a high score.

    Degenerate members. A PyOD member whose training scores are not all finite, or all
    equal (for example on a constant training window), is dropped with a
    :class:`~predictor.exceptions.DegenerateMemberWarning` and a logged warning. The
    robust z-score is kept on constant training because its unit is absolute: repeats of
    the training value score 0 and a move of ``d`` scores ``d / max(1e-3, 1e-3 * level)``,
    where ``level`` is the absolute training median of the metric. At score time a
    member's non-finite scores are left out of the mean for those rows only.

    Scores are computed row by row: a row's score does not depend on the other rows in
    the batch. PyOD's ECOD and COPOD would re-estimate their distributions on each scored
    batch, so they run in a variant that scores against the training rows only.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 3))
    >>> model = AnomalyEnsemble(n_estimators=20, random_state=0).fit(X)
    >>> scores = model.score_samples(np.array([[0.0, 0.0, 0.0], [9.0, 0.0, 0.0]]))
    >>> bool(scores[0] < 0.5 <= scores[1])
    True
    >>> model.explain(np.array([[9.0, 0.0, 0.0]]))[0][0][0]
    'x0'
    """

    def __init__(
        self,
        members: Sequence[str] = DEFAULT_MEMBERS,
        n_estimators: int = 100,
        n_neighbors: int = 5,
        max_train_rows: int = 5000,
        tail_fraction: float = 0.05,
        fusion: str = DEFAULT_FUSION,
        member_weights: Mapping[str, float] | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.members = members
        self.n_estimators = n_estimators
        self.n_neighbors = n_neighbors
        self.max_train_rows = max_train_rows
        self.tail_fraction = tail_fraction
        self.fusion = fusion
        self.member_weights = member_weights
        self.random_state = random_state

    def fit(self, X, y=None) -> AnomalyEnsemble:  # type: ignore[no-untyped-def]
        """Fit every member, drop degenerate ones and learn the score scale.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (normal operation), NaN allowed, at least 2 rows.
        y : None
            Ignored.

        Returns
        -------
        self : AnomalyEnsemble
            The fitted ensemble.

        Raises
        ------
        ValueError
            If a parameter is invalid, ``X`` contains infinite values, or every member was
            dropped.
        """
        names = self._check_params()
        X = validate_data(
            self, X, dtype="float64", ensure_all_finite="allow-nan", ensure_min_samples=2
        )
        rng = check_random_state(self.random_state)
        started = time.perf_counter()

        floor = scale_floor(
            X,
            getattr(self, "feature_names_in_", None),
            min_scale=MIN_SCALE,
            min_relative_scale=MIN_RELATIVE_SCALE,
        )
        self.center_, self.scale_ = robust_center_scale(X, spread="iqr", min_scale=floor)
        X_scaled = self._scale(X)
        self.zscore_ = RobustZScore(
            min_scale=MIN_SCALE, min_relative_scale=MIN_RELATIVE_SCALE
        ).fit(self._named(X))
        seeds = rng.randint(np.iinfo(np.int32).max, size=len(names))
        fit_rows = self._subsample_rows(X.shape[0], rng)

        self.members_: dict[str, object] = {}
        self.tails_: dict[str, TailProbability] = {}
        self.dropped_members_: dict[str, str] = {}
        training_surprise = []
        for name, seed in zip(names, seeds, strict=True):
            detector, training_scores, reason = self._fit_member(
                name, X, X_scaled, fit_rows, int(seed)
            )
            if reason is not None:
                self._drop_member(name, reason)
                continue
            tail = TailProbability(self.tail_fraction, _tail_min_scale(name))
            self.members_[name] = detector
            self.tails_[name] = tail.fit(training_scores)
            training_surprise.append(tail.surprise(training_scores))

        if not self.members_:
            reasons = "; ".join(f"{name}: {why}" for name, why in self.dropped_members_.items())
            raise ValueError(f"members: every member was dropped as degenerate ({reasons})")
        self.fusion_ = self.fusion
        weights = DEFAULT_MEMBER_WEIGHTS if self.member_weights is None else self.member_weights
        self.weights_ = np.array([float(weights.get(name, 1.0)) for name in self.members_])
        fused = _combine_rows(np.column_stack(training_surprise) * self.weights_, self.fusion_)
        self.fused_tail_ = TailProbability(self.tail_fraction, FUSED_TAIL_MIN_SCALE).fit(fused)
        logger.debug(
            "ensemble: fitted %d members on %d rows x %d columns in %.2f s, dropped %d",
            len(self.members_),
            X.shape[0],
            X.shape[1],
            time.perf_counter() - started,
            len(self.dropped_members_),
        )
        return self

    def score_samples(self, X) -> np.ndarray:  # type: ignore[no-untyped-def]
        """Return the anomaly score of each row, in [0, 1]; higher means more anomalous.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Rows to score, NaN allowed.

        Returns
        -------
        ndarray of shape (n_samples,)
            :meth:`fused_surprise` mapped by
            :func:`~predictor.detect.scale.surprise_to_score`. NaN only where no member
            returned a finite score.
        """
        return surprise_to_score(self.fused_surprise(X))

    def fused_surprise(self, X) -> np.ndarray:  # type: ignore[no-untyped-def]
        """Return ``-log10 p_fused`` of each row, unbounded; higher means more anomalous.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Rows to score, NaN allowed.

        Returns
        -------
        ndarray of shape (n_samples,)
            The surprise of the combined member surprise under its training distribution
            (see Notes of the class). NaN only where no member returned a finite score.
        """
        surprise = self._surprise_matrix(self._validate(X))
        # Ensembles fitted before the weights existed weigh every member 1.
        surprise = surprise * getattr(self, "weights_", 1.0)
        # Ensembles fitted before the fusion parameter existed averaged their members.
        fused = _combine_rows(surprise, getattr(self, "fusion_", "mean"))
        n_unscored = int(np.isnan(fused).sum())
        if n_unscored:
            logger.warning("ensemble: no member returned a finite score on %d rows", n_unscored)
        return self.fused_tail_.surprise(fused)

    def member_surprise(self, X) -> pd.DataFrame:  # type: ignore[no-untyped-def]
        """Return each kept member's surprise ``-log10 p`` per row; higher is more anomalous.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Rows to score, NaN allowed.

        Returns
        -------
        pandas.DataFrame
            One column per kept member; indexed like ``X`` when it is a DataFrame. NaN
            where the member's score was not finite.
        """
        index = X.index if isinstance(X, pd.DataFrame) else None
        surprise = self._surprise_matrix(self._validate(X))
        return pd.DataFrame(surprise, columns=list(self.members_), index=index)

    def explain(self, X, top_k: int = 3) -> list[list[tuple[str, float]]]:  # type: ignore[no-untyped-def]
        """Name the metrics that drive each row's score.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Rows to explain, NaN allowed.
        top_k : int, default=3
            Most metrics named per row.

        Returns
        -------
        list of list of (str, float)
            For each row, up to ``top_k`` pairs ``(metric, share)`` in decreasing order,
            for the metrics whose largest robust z-score over their feature columns is
            above 3. ``share`` is the metric's squared z over the sum of squared z of all
            metrics in that row, so the shares of a row sum to at most 1. Empty where
            no metric is above 3. Metric names come from
            :func:`predictor.features.feature_metric` of the column names, or ``"x<j>"``
            without column names.
        """
        top_k = check_int_param(top_k, "top_k", 1)
        check_is_fitted(self, "zscore_")
        z = self.zscore_.column_z(self._named(self._validate(X)))
        metrics, metric_z = self._metric_z(z)

        squared = metric_z**2
        total = squared.sum(axis=1)
        drivers: list[list[tuple[str, float]]] = []
        for row in range(metric_z.shape[0]):
            order = np.argsort(-metric_z[row], kind="stable")[:top_k]
            drivers.append(
                [
                    (metrics[k], float(squared[row, k] / total[row]))
                    for k in order
                    if metric_z[row, k] > DRIVER_MIN_Z
                ]
            )
        return drivers

    def _check_params(self) -> list[str]:
        names = [self.members] if isinstance(self.members, str) else list(self.members)
        unknown = [name for name in names if name not in MEMBER_NAMES]
        if unknown or not names:
            raise ValueError(
                f"members: expected a non-empty list of {list(MEMBER_NAMES)}, got "
                f"{self.members!r} (unknown: {unknown!r})"
            )
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"members: expected each member once, got {duplicated!r} twice")
        check_int_param(self.n_estimators, "n_estimators", 1)
        check_int_param(self.n_neighbors, "n_neighbors", 1)
        check_int_param(self.max_train_rows, "max_train_rows", 2)
        check_float_param(self.tail_fraction, "tail_fraction", 0.0, 0.5)
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion: expected one of {list(FUSIONS)}, got {self.fusion!r}")
        _check_member_weights(self.member_weights)
        return names

    def _validate(self, X) -> np.ndarray:  # type: ignore[no-untyped-def]
        check_is_fitted(self, "fused_tail_")
        return validate_data(self, X, dtype="float64", ensure_all_finite="allow-nan", reset=False)

    def _scale(self, X: np.ndarray) -> np.ndarray:
        scaled = np.nan_to_num((X - self.center_) / self.scale_, nan=0.0)
        return np.clip(scaled, -MAX_ABS_SCALED, MAX_ABS_SCALED)

    def _named(self, X: np.ndarray) -> np.ndarray | pd.DataFrame:
        names = getattr(self, "feature_names_in_", None)
        return X if names is None else pd.DataFrame(X, columns=names)

    def _subsample_rows(self, n_rows: int, rng: np.random.RandomState) -> np.ndarray:
        if n_rows <= self.max_train_rows:
            return np.arange(n_rows)
        return np.sort(rng.choice(n_rows, size=self.max_train_rows, replace=False))

    def _fit_member(
        self,
        name: str,
        X: np.ndarray,
        X_scaled: np.ndarray,
        fit_rows: np.ndarray,
        seed: int,
    ) -> tuple[object, np.ndarray, str | None]:
        if name == ROBUST_Z:
            return self.zscore_, self.zscore_.score_samples(self._named(X)), None
        if name == CHANNEL:
            channel = RobustZScore(
                residual_features=CHANNEL_FEATURES,
                min_scale=MIN_SCALE,
                min_relative_scale=MIN_RELATIVE_SCALE,
            ).fit(self._named(X))
            z = channel.column_z(self._named(X))[:, channel.score_columns_]
            self.channel_tails_ = fit_column_tails(z, self.tail_fraction)
            return channel, channel_scores(z, self.channel_tails_), None

        spec = PYOD_MEMBERS[name]
        rows = fit_rows if spec.subsampled else np.arange(X.shape[0])
        detector = spec.build(self.n_estimators, self.n_neighbors, rows.size, seed)
        try:
            with _numeric_warnings_ignored():
                detector.fit(X_scaled[rows])  # type: ignore[attr-defined]
                training_scores = self._training_scores(detector, X_scaled, rows)
        except (ValueError, np.linalg.LinAlgError) as error:
            return detector, np.empty(0), f"fit failed: {error}"
        return detector, training_scores, _degenerate_reason(training_scores)

    @staticmethod
    def _training_scores(detector: object, X_scaled: np.ndarray, rows: np.ndarray) -> np.ndarray:
        # Fitted rows keep PyOD's training scores, which leave each row out of its own
        # neighborhood for the proximity members. Rows outside a subsample are scored as
        # new rows, so every training row contributes to the calibration.
        scores = np.empty(X_scaled.shape[0])
        scores[rows] = detector.decision_scores_  # type: ignore[attr-defined]
        rest = np.setdiff1d(np.arange(X_scaled.shape[0]), rows, assume_unique=True)
        if rest.size:
            scores[rest] = detector.decision_function(X_scaled[rest])  # type: ignore[attr-defined]
        return scores

    def _drop_member(self, name: str, reason: str) -> None:
        self.dropped_members_[name] = reason
        logger.warning("ensemble: dropped member %s: %s", name, reason)
        warnings.warn(
            f"ensemble member {name!r} dropped: {reason}", DegenerateMemberWarning, stacklevel=3
        )

    def _surprise_matrix(self, X: np.ndarray) -> np.ndarray:
        X_scaled = self._scale(X)
        columns = []
        for name, detector in self.members_.items():
            if name == ROBUST_Z:
                scores = self.zscore_.score_samples(self._named(X))
            elif name == CHANNEL:
                z = detector.column_z(self._named(X))  # type: ignore[attr-defined]
                scored = detector.score_columns_  # type: ignore[attr-defined]
                scores = channel_scores(z[:, scored], self.channel_tails_)
            else:
                with _numeric_warnings_ignored():
                    scores = detector.decision_function(X_scaled)  # type: ignore[attr-defined]
            columns.append(self.tails_[name].surprise(scores))
        return np.column_stack(columns)

    def _metric_z(self, z: np.ndarray) -> tuple[list[str], np.ndarray]:
        names = getattr(self, "feature_names_in_", None)
        if names is None:
            names = np.asarray([f"x{j}" for j in range(self.n_features_in_)], dtype=object)
        column_metrics = [feature_metric(str(name)) for name in names]
        metrics = list(dict.fromkeys(column_metrics))
        metric_z = np.zeros((z.shape[0], len(metrics)))
        for k, metric in enumerate(metrics):
            columns = [j for j, owner in enumerate(column_metrics) if owner == metric]
            metric_z[:, k] = z[:, columns].max(axis=1)
        return metrics, metric_z


@contextmanager
def _numeric_warnings_ignored() -> Iterator[None]:
    # Members warn about divisions by zero and empty slices on degenerate input (ABOD on
    # repeated rows, for example). Those problems show up as non-finite scores, which fit
    # drops and scoring leaves out, so the warnings themselves add nothing.
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _check_member_weights(weights: Mapping[str, float] | None) -> None:
    if weights is None:
        return
    if not isinstance(weights, Mapping):
        raise TypeError(
            f"member_weights: expected a mapping of member name to weight, got {weights!r}"
        )
    for name, weight in weights.items():
        if name not in MEMBER_NAMES:
            raise ValueError(
                f"member_weights: expected member names of {list(MEMBER_NAMES)}, got {name!r}"
            )
        check_float_param(weight, f"member_weights[{name!r}]", 0.0, 1.0)


def _tail_min_scale(name: str) -> float:
    if name == CHANNEL:
        return CHANNEL_TAIL_MIN_SCALE
    return ROBUST_Z_TAIL_MIN_SCALE if name == ROBUST_Z else PYOD_TAIL_MIN_SCALE


def _degenerate_reason(training_scores: np.ndarray) -> str | None:
    n_bad = int((~np.isfinite(training_scores)).sum())
    if n_bad:
        return f"returned non-finite scores on {n_bad} of {training_scores.size} training rows"
    spread = float(np.ptp(training_scores))
    if spread <= 1e-12 * max(1.0, float(np.abs(training_scores).max())):
        return (
            f"training scores are all {training_scores[0] + 0.0:.6g}, so the member carries "
            f"no information about these rows"
        )
    return None


def _combine_rows(values: np.ndarray, fusion: str) -> np.ndarray:
    """Return the max or mean of each row's finite values; NaN where a row has none."""
    finite = np.isfinite(values)
    counts = finite.sum(axis=1)
    if fusion == "max":
        combined = np.where(finite, values, -np.inf).max(axis=1)
    else:
        totals = np.where(finite, values, 0.0).sum(axis=1)
        combined = totals / np.maximum(counts, 1)
    return np.where(counts > 0, combined, np.nan)
