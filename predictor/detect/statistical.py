"""Robust z-score detector: how many robust standard deviations a value is from normal."""

from __future__ import annotations

import logging

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted, validate_data

from predictor.detect.base import (
    DetectorTagsMixin,
    check_float_param,
    robust_center_scale,
    scale_floor,
)
from predictor.features import FEATURE_SEPARATOR

logger = logging.getLogger(__name__)


class RobustZScore(DetectorTagsMixin, BaseEstimator):
    """Score rows by their largest robust z-score over the residual feature columns.

    For column ``j`` the robust z-score is ``|x_j - median_j| / sigma_j`` with
    ``sigma_j = 1.4826 * MAD_j`` learned on training data. A row's score is the maximum
    over the scored columns. Higher scores mean more anomalous (worse), in units of
    robust standard deviations.

    Parameters
    ----------
    residual_features : tuple of str, default=("resid", "sresid")
        Feature names (the part after the last ``":"`` of a column name, as made by
        :func:`predictor.features.make_features`) that the score uses when ``X`` has
        column names and at least one column matches. These residuals have the local level,
        trend and season removed. Otherwise every column is scored.
    min_scale : float, default=1e-3
        Absolute floor of ``sigma_j``, in the units of ``X``.
    min_relative_scale : float, default=1e-3
        Floor of ``sigma_j`` as a share of the column's level: the absolute training
        median of the column, or of its metric's ``value`` column when the column names
        follow ``"<metric>:<feature>"``. With both floors a column that is constant in
        training scores 0 for repeats of the training value and ``d / floor`` for a move
        of ``d``.

    Attributes
    ----------
    center_ : ndarray of shape (n_features_in_,)
        Training median of each column.
    scale_ : ndarray of shape (n_features_in_,)
        Robust standard deviation of each column (see Notes).
    score_columns_ : ndarray of int
        Indices of the columns the score takes its maximum over.
    n_features_in_ : int
        Number of columns seen in :meth:`fit`.
    feature_names_in_ : ndarray of str
        Column names seen in :meth:`fit`, when ``X`` had string column names.

    Notes
    -----
    Where more than half of a column's training values are equal the MAD is 0; the scale
    then falls back to 1.2533 times the mean absolute deviation from the median. The
    scale is never below ``max(min_scale, min_relative_scale * level)``, which is what a
    constant column gets. The absolute floor is in the units of the data, so it is a
    guess for data whose meaningful changes are much smaller than 1e-3. Missing cells
    (NaN) score 0, like a value at the training median.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.column_stack([np.linspace(0.0, 1.0, 50), np.zeros(50)])
    >>> detector = RobustZScore().fit(X)
    >>> detector.score_samples([[0.5, 0.0], [0.5, 1.0]]).round(1).tolist()
    [0.0, 1000.0]
    """

    def __init__(
        self,
        residual_features: tuple[str, ...] = ("resid", "sresid"),
        min_scale: float = 1e-3,
        min_relative_scale: float = 1e-3,
    ) -> None:
        self.residual_features = residual_features
        self.min_scale = min_scale
        self.min_relative_scale = min_relative_scale

    def fit(self, X, y=None) -> RobustZScore:  # type: ignore[no-untyped-def]
        """Learn each column's median and robust scale.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, NaN allowed, at least 2 rows.
        y : None
            Ignored.

        Returns
        -------
        self : RobustZScore
            The fitted detector.
        """
        min_scale = check_float_param(self.min_scale, "min_scale", 0.0, np.inf)
        min_relative_scale = check_float_param(
            self.min_relative_scale, "min_relative_scale", 0.0, np.inf, low_open=False
        )
        X = validate_data(
            self, X, dtype="float64", ensure_all_finite="allow-nan", ensure_min_samples=2
        )

        floor = scale_floor(
            X,
            getattr(self, "feature_names_in_", None),
            min_scale=min_scale,
            min_relative_scale=min_relative_scale,
        )
        self.center_, self.scale_ = robust_center_scale(X, spread="mad", min_scale=floor)
        self.score_columns_ = self._select_score_columns(X.shape[1])
        logger.debug(
            "robust z-score: fitted %d rows, scoring %d of %d columns",
            X.shape[0],
            self.score_columns_.size,
            X.shape[1],
        )
        return self

    def column_z(self, X) -> np.ndarray:  # type: ignore[no-untyped-def]
        """Return the absolute robust z-score of every cell; 0 for missing cells.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Rows to score, NaN allowed.

        Returns
        -------
        ndarray of shape (n_samples, n_features_in_)
            ``|x_j - center_j| / scale_j``. Higher means more anomalous.
        """
        check_is_fitted(self, "center_")
        X = validate_data(self, X, dtype="float64", ensure_all_finite="allow-nan", reset=False)
        z = np.abs(X - self.center_) / self.scale_
        return np.nan_to_num(z, nan=0.0)

    def score_samples(self, X) -> np.ndarray:  # type: ignore[no-untyped-def]
        """Return each row's largest robust z-score over :attr:`score_columns_`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features_in_)
            Rows to score, NaN allowed.

        Returns
        -------
        ndarray of shape (n_samples,)
            Scores >= 0 in robust standard deviations. Higher means more anomalous.
        """
        return self.column_z(X)[:, self.score_columns_].max(axis=1)

    def _select_score_columns(self, n_features: int) -> np.ndarray:
        names = getattr(self, "feature_names_in_", None)
        if names is not None and self.residual_features:
            wanted = set(self.residual_features)
            chosen = [
                j
                for j, name in enumerate(names)
                if str(name).rpartition(FEATURE_SEPARATOR)[2] in wanted
                and FEATURE_SEPARATOR in str(name)
            ]
            if chosen:
                return np.asarray(chosen, dtype=int)
        return np.arange(n_features)
