"""Model lifecycle in MLflow: safe model files, one registered model per component group,
the champion/challenger quality gate, rollback, and the fallbacks scoring uses."""

from __future__ import annotations

from predictor.lifecycle.registry import (
    CHALLENGER_ALIAS,
    CHAMPION_ALIAS,
    RegisteredVersion,
    VersionInfo,
    component_groups,
    configure_mlflow,
    list_versions,
    load_champion_of,
    load_version,
    model_name,
    promote,
    registered_model_names,
    rollback,
)
from predictor.lifecycle.runs import log_calibration_run
from predictor.lifecycle.serialization import TRUSTED_TYPES, load_fleet, save_fleet

__all__ = [
    "CHALLENGER_ALIAS",
    "CHAMPION_ALIAS",
    "TRUSTED_TYPES",
    "RegisteredVersion",
    "VersionInfo",
    "component_groups",
    "configure_mlflow",
    "list_versions",
    "load_champion_of",
    "load_fleet",
    "load_version",
    "log_calibration_run",
    "model_name",
    "promote",
    "registered_model_names",
    "rollback",
    "save_fleet",
]
