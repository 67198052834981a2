"""MLflow model-from-code definition of the fleet model.

MLflow loads this file to rebuild the Python model, so the model object itself is
not pickled with cloudpickle. The fitted estimators travel as the ``fleet`` artifact,
a joblib file written by :func:`predictor.tracking.log_training_run`.
"""

from __future__ import annotations

from typing import Any

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class FleetPyfuncModel(PythonModel):
    """Score feature rows of any component of the fleet.

    ``predict`` takes a frame with a ``component`` column and the component's feature
    columns, and returns the anomaly score in [0, 1] per row (higher means more
    anomalous). The full scoring path with forecasts and levels is
    :func:`predictor.pipeline.score`; this entry point lets a notebook or another
    MLflow tool use the ensembles directly.
    """

    def load_context(self, context: Any) -> None:
        self.fleet = joblib.load(context.artifacts["fleet"])

    # No type hints: MLflow would infer a signature from them, and feature columns
    # differ per component, so the input is validated here instead.
    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
        scores = np.full(len(model_input), np.nan)
        for component, rows in model_input.groupby("component", sort=False):
            model = self.fleet.components.get(component)
            if model is None:
                continue
            X = rows[model.feature_columns]
            positions = model_input.index.get_indexer(rows.index)
            scores[positions] = model.ensemble.score_samples(X)
        return pd.DataFrame({"anomaly_score": scores}, index=model_input.index)


mlflow.models.set_model(FleetPyfuncModel())
