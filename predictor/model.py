"""The fitted models of one training run: one entry per component.

A :class:`FleetModel` is what a training run logs to MLflow and what scoring loads
back. It holds, per component, the anomaly ensemble fitted on that component's
training window and a degradation forecaster per thresholded metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from predictor.detect import AnomalyEnsemble
    from predictor.forecast import DegradationForecaster


@dataclass
class ComponentModel:
    """Models and feature settings of one component.

    Attributes
    ----------
    component : str
        The component name.
    group : str or None
        The component's failure domain, when declared.
    step_seconds : float
        Spacing of the regular grid that features are computed on.
    window_steps : int
        Length of the trailing feature windows, in grid steps.
    season_steps : int or None
        Season length in grid steps, when seasonal features are used.
    metrics : list of str
        The metrics seen in training, in feature order.
    feature_columns : list of str
        The feature columns the ensemble was fitted on.
    train_start, train_end : pandas.Timestamp
        First and last grid time of the training window (UTC).
    ensemble : AnomalyEnsemble
        The fitted anomaly ensemble.
    forecasters : dict of str to DegradationForecaster
        A fitted forecaster per metric that has a threshold.
    train_rows : int
        Grid points used for training.
    smoothing_span : int
        Span, in grid steps, of the weighted trailing mean of the ensemble's surprise
        before it becomes the anomaly score; 1 means none.
    feature_center, feature_scale : ndarray of shape (n_features,) or None
        With a group-shared ensemble: the median and robust scale of each feature
        column on this component's own training rows. Features are standardized with
        them before they reach the shared ensemble, so components of one group with
        different normal levels share one notion of unusual. None when the ensemble
        is the component's own.
    """

    component: str
    group: str | None
    step_seconds: float
    window_steps: int
    season_steps: int | None
    metrics: list[str]
    feature_columns: list[str]
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    ensemble: AnomalyEnsemble
    forecasters: dict[str, DegradationForecaster] = field(default_factory=dict)
    train_rows: int = 0
    smoothing_span: int = 1
    feature_center: np.ndarray | None = None
    feature_scale: np.ndarray | None = None

    @property
    def step(self) -> pd.Timedelta:
        """Grid step as a timedelta."""
        return pd.Timedelta(seconds=self.step_seconds)

    @property
    def shares_ensemble(self) -> bool:
        """Whether the ensemble is shared with the other components of the group."""
        return self.feature_center is not None

    def ensemble_input(self, features: pd.DataFrame) -> pd.DataFrame:
        """Return ``features`` as the ensemble expects them: standardized per component
        when the ensemble is shared, unchanged otherwise."""
        if self.feature_center is None or self.feature_scale is None:
            return features
        return (features - self.feature_center) / self.feature_scale


@dataclass
class FleetModel:
    """All component models of one training run.

    Attributes
    ----------
    components : dict of str to ComponentModel
    params : dict
        The model settings the run was trained with.
    version : str
        The registry version once registered, for example ``"predictor-fleet/3"``;
        empty until then.
    """

    components: dict[str, ComponentModel] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    version: str = ""
