"""Baseline detectors that the ensemble is measured against.

Both follow the scikit-learn estimator conventions of :mod:`predictor.detect`, and both
score higher for more anomalous rows, like every detector in predictor.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.decomposition import PCA
from sklearn.utils.validation import check_is_fitted, validate_data

from predictor.detect.base import DetectorTagsMixin, robust_center_scale


class L2NormDetector(DetectorTagsMixin, BaseEstimator):
    """Euclidean norm of the robustly standardized metrics.

    Each column is centered on its training median and divided by its training spread,
    and the score of a row is the L2 norm of the result; NaN cells count as 0.

    Parameters
    ----------
    min_scale : float, default=1e-3
        Floor of each column's spread, so a constant training column stays finite.
    """

    def __init__(self, min_scale: float = 1e-3) -> None:
        self.min_scale = min_scale

    def fit(self, X, y=None) -> L2NormDetector:  # type: ignore[no-untyped-def]
        """Learn each column's center and spread from the training rows."""
        X = validate_data(self, X, ensure_all_finite="allow-nan")
        self.center_, self.scale_ = robust_center_scale(X, min_scale=self.min_scale)
        return self

    def score_samples(self, X) -> np.ndarray:  # type: ignore[no-untyped-def]
        """Return the L2 norm of each standardized row; higher is more anomalous."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        standardized = np.nan_to_num((X - self.center_) / self.scale_, nan=0.0)
        return np.sqrt(np.sum(standardized**2, axis=1))


class PCAReconstructionDetector(DetectorTagsMixin, BaseEstimator):
    """Squared reconstruction error after projecting onto the main principal components.

    Parameters
    ----------
    explained_variance : float, default=0.9
        Share of the training variance that the kept components explain.
    min_scale : float, default=1e-3
        Floor of each column's spread before the projection.
    """

    def __init__(self, explained_variance: float = 0.9, min_scale: float = 1e-3) -> None:
        self.explained_variance = explained_variance
        self.min_scale = min_scale

    def fit(self, X, y=None) -> PCAReconstructionDetector:  # type: ignore[no-untyped-def]
        """Standardize the training rows and fit the principal components."""
        X = validate_data(self, X, ensure_all_finite="allow-nan")
        self.center_, self.scale_ = robust_center_scale(X, min_scale=self.min_scale)
        standardized = np.nan_to_num((X - self.center_) / self.scale_, nan=0.0)
        n_components = self.explained_variance if X.shape[1] > 1 else 1
        self.pca_ = PCA(n_components=n_components, svd_solver="full").fit(standardized)
        return self

    def score_samples(self, X) -> np.ndarray:  # type: ignore[no-untyped-def]
        """Return each row's squared reconstruction error; higher is more anomalous."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, ensure_all_finite="allow-nan")
        standardized = np.nan_to_num((X - self.center_) / self.scale_, nan=0.0)
        reconstructed = self.pca_.inverse_transform(self.pca_.transform(standardized))
        return np.sum((standardized - reconstructed) ** 2, axis=1)
