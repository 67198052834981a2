"""Construction of the PyOD ensemble members, with fixes that keep scoring row-wise.

PyOD's ECOD and COPOD re-estimate their empirical distributions on the training rows
plus the whole batch being scored. A row's score then depends on the other rows in the
batch, including rows after it when a batch spans a time range. The subclasses here keep the
PyOD fit and score each row against the training distribution alone, which is what PyOD
returns when the row is scored on its own (up to the sign of each column's skewness,
taken from the training rows). PyOD's PCA divides by each component's explained variance
ratio and returns NaN for every row when a training column is constant; the subclass here
fits on the columns that vary in training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pyod.models.abod import ABOD
from pyod.models.copod import COPOD
from pyod.models.ecod import ECOD
from pyod.models.hbos import HBOS
from pyod.models.iforest import IForest
from pyod.models.knn import KNN
from pyod.models.lof import LOF
from pyod.models.pca import PCA
from scipy.stats import skew
from sklearn.utils import check_array
from sklearn.utils.validation import check_is_fitted

ROBUST_Z = "robust_z"
CHANNEL = "channel"
# Explained variance ratio, relative to the largest, below which a PCA component is
# treated as part of the null space of the training matrix (float64 rounding is ~1e-16).
NULL_COMPONENT_RATIO = 1e-12


class _TrainingECDFMixin:
    """Score rows with per-column tail probabilities under the training ECDFs."""

    def fit(self, X, y=None):  # type: ignore[no-untyped-def]
        X = check_array(X)
        self._set_n_classes(y)  # type: ignore[attr-defined]
        self.train_sorted_ = np.sort(X, axis=0)
        with np.errstate(all="ignore"):
            column_skew = skew(X, axis=0)
        # A constant column has undefined skewness (NaN in SciPy); sign 0 weighs both tails.
        self.skew_sign_ = np.nan_to_num(np.sign(column_skew), nan=0.0)
        self.decision_scores_ = self._score(X, in_sample=True)
        self._process_decision_scores()  # type: ignore[attr-defined]
        return self

    def decision_function(self, X):  # type: ignore[no-untyped-def]
        check_is_fitted(self, "train_sorted_")
        return self._score(check_array(X), in_sample=False)

    def _tail_logs(self, X: np.ndarray, in_sample: bool) -> tuple[np.ndarray, np.ndarray]:
        n_train = self.train_sorted_.shape[0]
        # A scored row joins the training rows as one more sample, as in PyOD's ECDF over
        # the concatenation; a training row is already among them.
        extra = 0 if in_sample else 1
        at_or_below = np.empty_like(X)
        at_or_above = np.empty_like(X)
        for j in range(X.shape[1]):
            column = self.train_sorted_[:, j]
            at_or_below[:, j] = np.searchsorted(column, X[:, j], side="right")
            at_or_above[:, j] = n_train - np.searchsorted(column, X[:, j], side="left")
        total = n_train + extra
        left = -np.log((at_or_below + extra) / total)
        right = -np.log((at_or_above + extra) / total)
        return left, right

    def _skew_tail(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        sign = self.skew_sign_
        return left * -np.sign(sign - 1) + right * np.sign(sign + 1)

    def _score(self, X: np.ndarray, in_sample: bool) -> np.ndarray:
        raise NotImplementedError


class RowwiseECOD(_TrainingECDFMixin, ECOD):
    """PyOD ECOD that scores each row against the training ECDFs only."""

    def _score(self, X: np.ndarray, in_sample: bool) -> np.ndarray:
        left, right = self._tail_logs(X, in_sample)
        outlyingness = np.maximum(np.maximum(left, right), self._skew_tail(left, right))
        return outlyingness.sum(axis=1)


class RowwiseCOPOD(_TrainingECDFMixin, COPOD):
    """PyOD COPOD that scores each row against the training ECDFs only."""

    def _score(self, X: np.ndarray, in_sample: bool) -> np.ndarray:
        left, right = self._tail_logs(X, in_sample)
        outlyingness = np.maximum(self._skew_tail(left, right), (left + right) / 2.0)
        return outlyingness.sum(axis=1)


class VaryingColumnsPCA(PCA):
    """PyOD PCA on the columns that vary in training, without null-space components.

    PyOD divides each component's distance by its explained variance ratio. Components
    of a rank-deficient training matrix (a constant column, or metrics that are exact
    linear combinations of others) have a ratio of 0 up to rounding. Dividing by it makes
    every score infinite or NaN, so these components are left out of the score.
    """

    def fit(self, X, y=None):  # type: ignore[no-untyped-def]
        X = check_array(X)
        self.varying_columns_ = np.flatnonzero(np.ptp(X, axis=0) > 0)
        if self.varying_columns_.size == 0:
            raise ValueError(
                f"pca: every one of the {X.shape[1]} training columns is constant, "
                f"so there is nothing to project"
            )
        X = X[:, self.varying_columns_]
        super().fit(X, y)

        # PyOD (checked with 3.6) scores with `selected_components_` and
        # `selected_w_components_`; the training scores are recomputed after the filter.
        weights = self.selected_w_components_
        kept = weights > NULL_COMPONENT_RATIO * weights.max()
        self.selected_components_ = self.selected_components_[kept]
        self.selected_w_components_ = weights[kept]
        self.decision_scores_ = super().decision_function(X)
        self._process_decision_scores()
        return self

    def decision_function(self, X):  # type: ignore[no-untyped-def]
        check_is_fitted(self, "varying_columns_")
        return super().decision_function(check_array(X)[:, self.varying_columns_])


def compress_scaled(X: np.ndarray) -> np.ndarray:
    """Return ``sign(x) * log(1 + |x|)`` of scaled inputs: linear near 0, logarithmic far out."""
    return np.sign(X) * np.log1p(np.abs(X))


class LogCompressedKNN(KNN):
    """PyOD KNN on log-compressed scaled inputs (see :func:`compress_scaled`).

    On scaled inputs, a column that moves hundreds of robust standard deviations dominates
    the distance. The compression shrinks such moves, so a row that moves a few robust
    standard deviations on many columns can rank above it.
    """

    def fit(self, X, y=None):  # type: ignore[no-untyped-def]
        return super().fit(compress_scaled(check_array(X)), y)

    def decision_function(self, X):  # type: ignore[no-untyped-def]
        return super().decision_function(compress_scaled(check_array(X)))


@dataclass(frozen=True)
class MemberSpec:
    """How to build one ensemble member.

    Attributes
    ----------
    build : callable
        ``build(n_estimators, n_neighbors, n_fit_rows, seed)`` returns an unfitted PyOD
        detector.
    subsampled : bool
        Whether the member is fitted on at most ``max_train_rows`` rows, because its
        fit or score time grows with the rows it keeps or it stores them.
    """

    build: Callable[[int, int, int, int], object]
    subsampled: bool


def _neighbors(n_neighbors: int, n_fit_rows: int) -> int:
    # Neighbor queries need k < number of fitted rows.
    return max(1, min(n_neighbors, n_fit_rows - 1))


PYOD_MEMBERS: dict[str, MemberSpec] = {
    "iforest": MemberSpec(
        lambda n_estimators, n_neighbors, n_rows, seed: IForest(
            n_estimators=n_estimators, random_state=seed
        ),
        subsampled=False,
    ),
    "ecod": MemberSpec(lambda n_estimators, n_neighbors, n_rows, seed: RowwiseECOD(), True),
    "copod": MemberSpec(lambda n_estimators, n_neighbors, n_rows, seed: RowwiseCOPOD(), True),
    "knn": MemberSpec(
        lambda n_estimators, n_neighbors, n_rows, seed: KNN(
            n_neighbors=_neighbors(n_neighbors, n_rows)
        ),
        subsampled=True,
    ),
    "knn_log": MemberSpec(
        lambda n_estimators, n_neighbors, n_rows, seed: LogCompressedKNN(
            n_neighbors=_neighbors(n_neighbors, n_rows)
        ),
        subsampled=True,
    ),
    "lof": MemberSpec(
        lambda n_estimators, n_neighbors, n_rows, seed: LOF(
            n_neighbors=_neighbors(n_neighbors, n_rows), novelty=True
        ),
        subsampled=True,
    ),
    "abod": MemberSpec(
        lambda n_estimators, n_neighbors, n_rows, seed: ABOD(
            n_neighbors=_neighbors(n_neighbors, n_rows)
        ),
        subsampled=True,
    ),
    "pca": MemberSpec(
        lambda n_estimators, n_neighbors, n_rows, seed: VaryingColumnsPCA(random_state=seed),
        subsampled=False,
    ),
    "hbos": MemberSpec(lambda n_estimators, n_neighbors, n_rows, seed: HBOS(), False),
}

MEMBER_NAMES: tuple[str, ...] = (*PYOD_MEMBERS, ROBUST_Z, CHANNEL)
