"""MLflow runs that carry no model: the risk calibration."""

from __future__ import annotations

import logging
from pathlib import Path

from predictor.config import Settings
from predictor.lifecycle.registry import configure_mlflow, import_mlflow
from predictor.risk_calibration import RiskCalibration

logger = logging.getLogger(__name__)


def log_calibration_run(settings: Settings, calibration: RiskCalibration, path: Path) -> str:
    """Log one MLflow run with a risk calibration's figures and its JSON file as artifact.

    Returns
    -------
    str
        The run id.
    """
    mlflow = import_mlflow()

    experiment_id = configure_mlflow(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name="calibrate") as run:
        mlflow.set_tags({"predictor.stage": "calibrate"})
        mlflow.log_params(
            {
                "method": calibration.calibrator.method,
                "horizon_minutes": calibration.horizon_minutes,
                "fitted_until": calibration.fitted_until.isoformat(),
                "components": ",".join(calibration.components)[:500],
            }
        )
        metrics: dict[str, float] = {
            "n_rows": calibration.n_rows,
            "n_positive": calibration.n_positive,
            "n_failures": calibration.n_failures,
        }
        for key, value in (calibration.out_of_time or {}).items():
            metrics[f"out_of_time.{key}"] = value
        mlflow.log_metrics(metrics)
        mlflow.log_artifact(str(path), artifact_path="calibration")
        logger.info("tracking: logged calibration run %s", run.info.run_id)
        return run.info.run_id
