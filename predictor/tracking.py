"""MLflow tracking, kept for imports written before :mod:`predictor.lifecycle` existed."""

from __future__ import annotations

from predictor.lifecycle.registry import CHAMPION_ALIAS, configure_mlflow
from predictor.lifecycle.registry import import_mlflow as _import_mlflow
from predictor.lifecycle.runs import log_calibration_run

__all__ = ["CHAMPION_ALIAS", "_import_mlflow", "configure_mlflow", "log_calibration_run"]
