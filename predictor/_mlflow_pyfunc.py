"""MLflow model-from-code definition of a fleet model.

MLflow loads this file to rebuild the Python model, so the model object itself is
not pickled with cloudpickle. The fitted estimators travel as the ``fleet`` artifact,
a skops file written by :func:`predictor.lifecycle.serialization.save_fleet` and read
back with the project's list of trusted types, so loading runs no pickle.
"""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from predictor.lifecycle.serialization import load_fleet


class FleetPyfuncModel(PythonModel):
    """Score feature rows of any component of a fleet model.

    ``predict`` takes a frame with a ``component`` column and the component's feature
    columns, and returns the anomaly score in [0, 1] per row (higher means more
    anomalous); rows of a component the model does not hold score NaN. The model's
    signature lists ``component`` and every feature column of every component, the
    feature columns as optional, because each component has its own. The full scoring
    path with forecasts and levels is :func:`predictor.pipeline.score`; this entry
    point lets a notebook or another MLflow tool use the ensembles directly.
    """

    def load_context(self, context: Any) -> None:
        self.fleet = load_fleet(context.artifacts["fleet"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        scores = np.full(len(model_input), np.nan)
        for component, rows in model_input.groupby("component", sort=False):
            model = self.fleet.components.get(str(component))
            if model is None:
                continue
            X = rows.reindex(columns=model.feature_columns).astype("float64")
            positions = model_input.index.get_indexer(rows.index)
            scores[positions] = model.ensemble.score_samples(X)
        return pd.DataFrame({"anomaly_score": scores}, index=model_input.index)


mlflow.models.set_model(FleetPyfuncModel())
