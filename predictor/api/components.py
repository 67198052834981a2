"""The list of known components: configured, scored or with stored telemetry."""

from __future__ import annotations

import logging

from predictor.api.queries import RiskReader
from predictor.api.schemas import Component
from predictor.config import Settings
from predictor.telemetry import TelemetryStore

logger = logging.getLogger(__name__)


def list_components(
    settings: Settings, reader: RiskReader, *, limit: int, offset: int
) -> tuple[list[Component], int]:
    """Return one page of known components ordered by name, and their total number.

    The group comes from the configuration, else from the component's latest score.
    The newest telemetry time is read from the Parquet store for the page's components
    only, because it costs one file read per component.
    """
    scored = reader.scored_components()
    telemetry = TelemetryStore(settings.telemetry_dir)
    stored = set(telemetry.components()) if settings.telemetry_dir.is_dir() else set()
    configured = {component.name: component for component in settings.components}
    names = sorted(set(scored) | stored | set(configured))

    page = []
    page_names = names[offset : offset + limit]
    last_times = telemetry.last_timestamps(name for name in page_names if name in stored)
    for name in page_names:
        declared = configured.get(name)
        group = declared.group if declared is not None and declared.group else scored.get(name)
        latest = reader.latest(name) if name in scored else None
        last_telemetry = last_times.get(name)
        page.append(
            Component(
                name=name,
                group=group,
                configured=declared is not None,
                last_scored_at=latest["scored_at"] if latest else None,
                last_telemetry_at=(
                    last_telemetry.to_pydatetime() if last_telemetry is not None else None
                ),
            )
        )
    return page, len(names)
