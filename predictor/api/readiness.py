"""Readiness checks of the API: store reachable, scores fresh, a champion model present."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

from predictor.api.queries import STORE_ERRORS, RiskReader
from predictor.api.schemas import Check
from predictor.config import Settings

logger = logging.getLogger(__name__)

CHAMPION_ALIAS = "champion"


def champion_model_version(settings: Settings, name: str | None = None) -> str | None:
    """Return the version of registered model ``name`` with alias ``champion``.

    ``name`` defaults to ``settings.registered_model_name``. Returns None when the
    registry has no such model or alias, or when the tracking store is a SQLite file
    that does not exist yet (asking MLflow would create it).

    Raises
    ------
    mlflow.exceptions.MlflowException
        If the registry cannot be reached or fails for another reason.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST, ErrorCode

    uri = settings.mlflow_tracking_uri
    if _missing_sqlite_file(uri):
        return None
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        version = client.get_model_version_by_alias(
            name or settings.registered_model_name, CHAMPION_ALIAS
        )
    except MlflowException as error:
        if error.error_code == ErrorCode.Name(RESOURCE_DOES_NOT_EXIST):
            return None
        raise
    return str(version.version)


def _missing_sqlite_file(uri: str) -> bool:
    if not uri.startswith("sqlite:///"):
        return False
    database = sa.engine.make_url(uri).database
    return bool(database) and not Path(database).is_file()


def expected_model_names(settings: Settings) -> list[str]:
    """Return the registered models that should each have a champion.

    These are the deployment's models already in the registry (the fleet model and one
    per component group); with none registered yet, the fleet model is expected.
    """
    from predictor.lifecycle.registry import registered_model_names

    names = []
    if not _missing_sqlite_file(settings.mlflow_tracking_uri):
        names = registered_model_names(settings)
    return names or [settings.registered_model_name]


def check_store(reader: Callable[[], RiskReader]) -> Check:
    """Check that the risk store runs a query."""
    try:
        reader().ping()
    except STORE_ERRORS as error:
        logger.warning("readiness: risk store unreachable: %s", error)
        return Check(name="store", ok=False, detail=f"risk store unreachable: {error}")
    return Check(name="store", ok=True, detail="risk store answered")


def check_freshness(
    reader: Callable[[], RiskReader], interval_minutes: float, now: dt.datetime
) -> Check:
    """Check that the newest score is younger than twice the scoring interval."""
    limit = dt.timedelta(minutes=2 * interval_minutes)
    try:
        newest = reader().newest_scored_at()
    except STORE_ERRORS as error:
        return Check(name="freshness", ok=False, detail=f"risk store unreachable: {error}")
    if newest is None:
        return Check(name="freshness", ok=False, detail="the risk store has no scores")
    age = now - newest
    detail = (
        f"newest score at {newest.isoformat()} is {age.total_seconds():.0f} s old; "
        f"the limit is {limit.total_seconds():.0f} s (twice the scoring interval)"
    )
    return Check(name="freshness", ok=age <= limit, detail=detail)


def check_champion(settings: Settings) -> Check:
    """Check that every registered model of the deployment has a champion version."""
    from mlflow.exceptions import MlflowException

    try:
        names = expected_model_names(settings)
        versions = {name: champion_model_version(settings, name) for name in names}
    except MlflowException as error:
        logger.warning("readiness: model registry query failed: %s", error)
        return Check(name="champion", ok=False, detail=f"model registry query failed: {error}")
    missing = [name for name, version in versions.items() if version is None]
    if missing:
        return Check(
            name="champion",
            ok=False,
            detail=f"model {missing[0]!r} has no version with alias champion "
            f"({len(missing)} of {len(versions)} models have none)",
        )
    serving = ", ".join(f"{name}/{version}" for name, version in versions.items())
    return Check(name="champion", ok=True, detail=f"champions: {serving}")
