"""MLflow registry of the fleet models: one registered model per component group.

Names. Without any ``group`` in ``[[components]]`` the whole fleet is one registered
model called ``registered_model_name`` (default ``predictor-fleet``). When some
component has a group, each group ``G`` gets ``<registered_model_name>-<G>`` and the
components without a group (or not declared) stay in ``<registered_model_name>``.

Aliases. ``champion`` is the version that scoring publishes; ``challenger`` is the
newest trained version that has not become champion, and scoring runs it in shadow.
Every version a champion alias has pointed to is kept, in order, in the registered
model's tag ``predictor.champion_history``, so ``rollback`` can go back one step and
scoring can fall back to the previous champion.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from predictor.config import Settings
from predictor.exceptions import ModelLifecycleError, ModelNotFoundError
from predictor.lifecycle.serialization import save_fleet
from predictor.model import FleetModel

logger = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
HISTORY_TAG = "predictor.champion_history"
STATUS_TAG = "predictor.status"
REASON_TAG = "predictor.reason"
GROUP_TAG = "predictor.group"
GATE_METRIC_PREFIX = "gate."
MODEL_ARTIFACT = "fleet_model"
_PYFUNC_FILE = Path(__file__).resolve().parent.parent / "_mlflow_pyfunc.py"


def import_mlflow():  # type: ignore[no-untyped-def]
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
    mlflow = import_mlflow()

    settings.home.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(settings.experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(
        settings.experiment_name, artifact_location=settings.mlflow_artifact_uri
    )


def client_for(settings: Settings):  # type: ignore[no-untyped-def]
    """Return an ``MlflowClient`` on the settings' tracking store."""
    configure_mlflow(settings)
    return import_mlflow().MlflowClient()


def model_name(settings: Settings, group: str | None) -> str:
    """Return the registered model name of a component group (None: no group)."""
    base = settings.registered_model_name
    return base if group is None else f"{base}-{group}"


def component_groups(settings: Settings, components: Iterable[str]) -> dict[str, list[str]]:
    """Map each registered model name to its components, in sorted order.

    Components without a declared group belong to ``registered_model_name``.
    """
    groups: dict[str, list[str]] = {}
    for component in sorted(components):
        declared = settings.component(component)
        name = model_name(settings, declared.group if declared else None)
        groups.setdefault(name, []).append(component)
    return groups


@dataclass(frozen=True)
class RegisteredVersion:
    """One registered version of a group model and the MLflow run that logged it."""

    name: str
    version: str
    run_id: str

    @property
    def label(self) -> str:
        """``"<name>/<version>"``, as stored in ``scores.model_version``."""
        return f"{self.name}/{self.version}"


def _signature(fleet: FleetModel):  # type: ignore[no-untyped-def]
    """Input: ``component`` and every feature column (optional); output: the score."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    columns = sorted({c for model in fleet.components.values() for c in model.feature_columns})
    specs: list[ColSpec | TensorSpec] = [ColSpec("string", "component")]
    specs += [ColSpec("double", column, required=False) for column in columns]
    inputs = Schema(specs)
    outputs = Schema([ColSpec("double", "anomaly_score")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _input_example(fleet: FleetModel):  # type: ignore[no-untyped-def]
    """Build one input row of the first component at its training medians."""
    import pandas as pd

    component, model = next(iter(sorted(fleet.components.items())))
    row = dict(zip(model.feature_columns, model.ensemble.center_.tolist(), strict=True))
    return pd.DataFrame([{"component": component, **row}])


def log_group_model(
    settings: Settings,
    name: str,
    fleet: FleetModel,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str] | None = None,
) -> RegisteredVersion:
    """Log one training run with ``fleet`` as a skops artifact and register it as ``name``.

    No alias is set here; :mod:`predictor.lifecycle.gate` decides that.
    """
    mlflow = import_mlflow()

    experiment_id = configure_mlflow(settings)
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=f"train {name}") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        mlflow.log_params({key: str(value)[:500] for key, value in params.items()})
        mlflow.log_metrics(dict(metrics))
        mlflow.set_tags(
            {
                "predictor.stage": "train",
                "predictor.registered_model": name,
                "predictor.components": str(len(fleet.components)),
                **(tags or {}),
            }
        )
        bundle = save_fleet(fleet, Path(tmp) / "fleet.skops")
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(_PYFUNC_FILE),
            artifacts={"fleet": str(bundle)},
            signature=_signature(fleet),
            input_example=_input_example(fleet),
            registered_model_name=name,
            pip_requirements=["skops", "pandas", "numpy", "scikit-learn", "pyod"],
        )
        run_id = run.info.run_id
    registered = RegisteredVersion(name, str(info.registered_model_version), run_id)
    logger.info(
        "registry: logged run %s with %d components as %s",
        run_id,
        len(fleet.components),
        registered.label,
    )
    return registered


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def champion_version(settings: Settings, name: str) -> str | None:
    """Return the version that ``name@champion`` points to, or None."""
    return _alias_version(client_for(settings), name, CHAMPION_ALIAS)


def challenger_version(settings: Settings, name: str) -> str | None:
    """Return the version that ``name@challenger`` points to, or None."""
    return _alias_version(client_for(settings), name, CHALLENGER_ALIAS)


def champion_history(settings: Settings, name: str) -> list[str]:
    """Return every version that has been champion, oldest first (after rollbacks)."""
    client = client_for(settings)
    tags = client.get_registered_model(name).tags
    text = tags.get(HISTORY_TAG, "")
    return [version for version in text.split(",") if version]


def previous_champion(settings: Settings, name: str) -> str | None:
    """Return the champion before the current one, or None."""
    history = champion_history(settings, name)
    return history[-2] if len(history) >= 2 else None


def _check_version(client: Any, name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, version)
    except MlflowException:
        raise ModelLifecycleError(
            f"registered model {name!r} has no version {version!r}"
        ) from None


def set_challenger(settings: Settings, registered: RegisteredVersion) -> None:
    """Point ``challenger`` at a newly registered version."""
    client = client_for(settings)
    client.set_registered_model_alias(registered.name, CHALLENGER_ALIAS, registered.version)
    client.set_model_version_tag(registered.name, registered.version, STATUS_TAG, "challenger")


def promote(settings: Settings, name: str, version: str, reason: str) -> str | None:
    """Make ``name/version`` the champion and record it in the champion history.

    Returns
    -------
    str or None
        The champion version before, or None when there was none.

    Raises
    ------
    ModelLifecycleError
        If the version does not exist.
    """
    client = client_for(settings)
    _check_version(client, name, version)
    before = _alias_version(client, name, CHAMPION_ALIAS)
    if before == version:
        return before
    client.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    history = [v for v in champion_history(settings, name) if v != version] + [version]
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    client.set_model_version_tag(name, version, STATUS_TAG, "champion")
    client.set_model_version_tag(name, version, REASON_TAG, reason[:500])
    if before is not None:
        client.set_model_version_tag(name, before, STATUS_TAG, "retired")
    if _alias_version(client, name, CHALLENGER_ALIAS) == version:
        client.delete_registered_model_alias(name, CHALLENGER_ALIAS)
    logger.info("registry: %s/%s is champion (was %s): %s", name, version, before, reason)
    return before


def reject(settings: Settings, registered: RegisteredVersion, reason: str) -> None:
    """Tag a challenger and its run as rejected with the reason; the champion stays."""
    client = client_for(settings)
    client.set_model_version_tag(registered.name, registered.version, STATUS_TAG, "rejected")
    client.set_model_version_tag(registered.name, registered.version, REASON_TAG, reason[:500])
    client.set_tag(registered.run_id, "predictor.gate", "rejected")
    client.set_tag(registered.run_id, "predictor.gate.reason", reason[:5000])
    logger.warning("registry: challenger %s rejected: %s", registered.label, reason)


def rollback(settings: Settings, name: str) -> tuple[str, str]:
    """Point ``champion`` back at the previous champion version.

    Returns
    -------
    (str, str)
        The version rolled back from and the version now champion.

    Raises
    ------
    ModelLifecycleError
        If ``name`` has no champion or no earlier champion to return to.
    """
    client = client_for(settings)
    current = _alias_version(client, name, CHAMPION_ALIAS)
    history = champion_history(settings, name)
    if current is None:
        raise ModelLifecycleError(f"registered model {name!r} has no champion to roll back")
    if current in history:
        history = history[: history.index(current)]
    if not history:
        raise ModelLifecycleError(
            f"registered model {name!r}: champion version {current} has no previous "
            "champion to roll back to"
        )
    target = history[-1]
    client.set_registered_model_alias(name, CHAMPION_ALIAS, target)
    client.set_registered_model_tag(name, HISTORY_TAG, ",".join(history))
    client.set_model_version_tag(name, current, STATUS_TAG, "rolled_back")
    client.set_model_version_tag(name, target, STATUS_TAG, "champion")
    logger.warning("registry: %s rolled back from version %s to %s", name, current, target)
    return current, target


def registered_model_names(settings: Settings) -> list[str]:
    """Return the names of this deployment's registered models, sorted."""
    client = client_for(settings)
    base = settings.registered_model_name
    names = [model.name for model in client.search_registered_models(max_results=1000)]
    return sorted(name for name in names if name == base or name.startswith(f"{base}-"))


@dataclass
class VersionInfo:
    """One registered version as ``predictor models list`` shows it."""

    name: str
    version: str
    run_id: str
    aliases: list[str]
    status: str
    reason: str
    gate_metrics: dict[str, float] = field(default_factory=dict)


def list_versions(settings: Settings) -> list[VersionInfo]:
    """Return every version of every registered model, newest first per model."""
    client = client_for(settings)
    rows = []
    for name in registered_model_names(settings):
        aliases: dict[str, list[str]] = {}
        for alias, version in client.get_registered_model(name).aliases.items():
            aliases.setdefault(str(version), []).append(alias)
        versions = client.search_model_versions(f"name='{name}'")
        for version in sorted(versions, key=lambda v: int(v.version), reverse=True):
            metrics = client.get_run(version.run_id).data.metrics if version.run_id else {}
            rows.append(
                VersionInfo(
                    name=name,
                    version=str(version.version),
                    run_id=version.run_id or "",
                    aliases=sorted(aliases.get(str(version.version), [])),
                    status=version.tags.get(STATUS_TAG, ""),
                    reason=version.tags.get(REASON_TAG, ""),
                    gate_metrics={
                        key.removeprefix(GATE_METRIC_PREFIX): value
                        for key, value in metrics.items()
                        if key.startswith(GATE_METRIC_PREFIX)
                    },
                )
            )
    return rows


def resolve_version(settings: Settings, text: str, model: str | None = None) -> tuple[str, str]:
    """Return ``(name, version)`` from ``"NAME/N"``, or ``"N"`` with ``model`` or one model.

    Raises
    ------
    ModelLifecycleError
        If the text names no known model, or ``"N"`` is ambiguous.
    """
    names = registered_model_names(settings)
    if "/" in text:
        name, _, version = text.rpartition("/")
    else:
        version = text
        if model is not None:
            name = model
        elif len(names) == 1:
            name = names[0]
        else:
            raise ModelLifecycleError(
                f"version {text!r}: expected NAME/VERSION or --model NAME, because there are "
                f"{len(names)} registered models: {names}"
            )
    if not version.isdigit():
        raise ModelLifecycleError(f"version {text!r}: expected a version number, got {version!r}")
    if name not in names:
        raise ModelLifecycleError(f"unknown registered model {name!r}; known: {names}")
    return name, version


def resolve_model(settings: Settings, model: str | None) -> str:
    """Return ``model``, or the only registered model when None.

    Raises
    ------
    ModelLifecycleError
        If there is no registered model, ``model`` is unknown, or None is ambiguous.
    """
    names = registered_model_names(settings)
    if model is not None:
        if model not in names:
            raise ModelLifecycleError(f"unknown registered model {model!r}; known: {names}")
        return model
    if len(names) == 1:
        return names[0]
    if not names:
        raise ModelLifecycleError(
            f"no registered model in {settings.mlflow_tracking_uri}; run `predictor train` first"
        )
    raise ModelLifecycleError(f"give --model NAME; there are {len(names)} models: {names}")


def load_version(settings: Settings, name: str, version: str) -> FleetModel:
    """Load ``name/version`` through its MLflow pyfunc model.

    Raises
    ------
    ModelNotFoundError
        If the version is not registered.
    Exception
        Whatever MLflow or skops raise when the artifact is missing or unreadable.
    """
    client = client_for(settings)
    try:
        _check_version(client, name, version)
    except ModelLifecycleError as error:
        raise ModelNotFoundError(str(error)) from None
    pyfunc_model = import_mlflow().pyfunc.load_model(f"models:/{name}/{version}")
    fleet: FleetModel = pyfunc_model.unwrap_python_model().fleet
    fleet.version = f"{name}/{version}"
    logger.info("registry: loaded %s (%d components)", fleet.version, len(fleet.components))
    return fleet


def load_champion_of(settings: Settings, name: str) -> FleetModel:
    """Load the champion of registered model ``name``.

    Raises
    ------
    ModelNotFoundError
        If ``name`` has no champion.
    """
    version = champion_version(settings, name)
    if version is None:
        raise ModelNotFoundError(
            f"no model registered as {name}@{CHAMPION_ALIAS} in {settings.mlflow_tracking_uri}; "
            "run `predictor train` first"
        )
    return load_version(settings, name, version)
