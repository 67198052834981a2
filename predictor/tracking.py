"""MLflow tracking and registry: log training runs, load the champion model back."""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import joblib

from predictor.config import Settings
from predictor.exceptions import ModelNotFoundError
from predictor.model import FleetModel
from predictor.risk_calibration import RiskCalibration

logger = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
_PYFUNC_FILE = Path(__file__).resolve().parent / "_mlflow_pyfunc.py"


def _import_mlflow():  # type: ignore[no-untyped-def]
    """Import MLflow with its pyfunc flavour, hiding the warning it emits about itself."""
    import mlflow

    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*Any type hint is inferred", category=UserWarning
        )
        import mlflow.pyfunc
    return mlflow


def configure_mlflow(settings: Settings) -> str:
    """Point MLflow at the settings' tracking store and return the experiment id.

    The experiment is created on first use with its artifacts under
    ``settings.mlflow_artifact_uri``, so a local deployment keeps everything inside
    ``PREDICTOR_HOME``.
    """
    mlflow = _import_mlflow()

    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(
        settings.experiment_name, artifact_location=settings.mlflow_artifact_uri
    )


def log_training_run(
    settings: Settings,
    fleet: FleetModel,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Log one training run and register its fleet model as the champion.

    Parameters
    ----------
    settings : Settings
    fleet : FleetModel
        The fitted models of every component.
    params : dict
        Training parameters, logged as MLflow params.
    metrics : dict
        Training metrics, logged as MLflow metrics.
    tags : dict or None, default=None
        Extra run tags.

    Returns
    -------
    run_id : str
    version : str
        The registered model version, for example ``"predictor-fleet/3"``.
    """
    mlflow = _import_mlflow()

    experiment_id = configure_mlflow(settings)
    with (
        mlflow.start_run(experiment_id=experiment_id) as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.log_params({key: str(value)[:500] for key, value in params.items()})
        mlflow.log_metrics(metrics)
        mlflow.set_tags({"predictor.stage": "train", **(tags or {})})

        bundle_path = Path(tmp) / "fleet.joblib"
        joblib.dump(fleet, bundle_path)
        with warnings.catch_warnings():
            # The fleet model's feature columns differ per component, so it has no
            # single signature to infer from type hints.
            warnings.filterwarnings("ignore", message=".*Add type hints", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name="fleet_model",
                python_model=str(_PYFUNC_FILE),
                artifacts={"fleet": str(bundle_path)},
                registered_model_name=settings.registered_model_name,
            )
        run_id = run.info.run_id

    client = mlflow.MlflowClient()
    version_number = str(info.registered_model_version)
    client.set_registered_model_alias(
        settings.registered_model_name, CHAMPION_ALIAS, version_number
    )
    version = f"{settings.registered_model_name}/{version_number}"
    logger.info(
        "tracking: logged run %s with %d components, registered %s as %s",
        run_id,
        len(fleet.components),
        version,
        CHAMPION_ALIAS,
    )
    return run_id, version


def log_calibration_run(settings: Settings, calibration: RiskCalibration, path: Path) -> str:
    """Log one MLflow run with a risk calibration's figures and its JSON file as artifact.

    Returns
    -------
    str
        The run id.
    """
    mlflow = _import_mlflow()

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
        metrics = {
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


def load_champion(settings: Settings) -> FleetModel:
    """Load the fleet model that the registry alias ``champion`` points to.

    Raises
    ------
    ModelNotFoundError
        If no model has been trained and registered yet.
    """
    from mlflow.exceptions import MlflowException

    mlflow = _import_mlflow()

    configure_mlflow(settings)
    client = mlflow.MlflowClient()
    name = settings.registered_model_name
    try:
        model_version = client.get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        raise ModelNotFoundError(
            f"no model registered as {name}@{CHAMPION_ALIAS} in {settings.mlflow_tracking_uri}; "
            "run `predictor train` first"
        ) from None

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Add type hints", category=UserWarning)
        pyfunc_model = mlflow.pyfunc.load_model(f"models:/{name}@{CHAMPION_ALIAS}")
    fleet: FleetModel = pyfunc_model.unwrap_python_model().fleet
    fleet.version = f"{name}/{model_version.version}"
    logger.info(
        "tracking: loaded %s (%d components) from run %s",
        fleet.version,
        len(fleet.components),
        model_version.run_id,
    )
    return fleet
