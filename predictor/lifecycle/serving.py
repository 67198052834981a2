"""The models a scoring run uses, and the fallbacks when a champion fails.

Each registered model contributes its champion, and its challenger when that is a
different version (scored in shadow). When a group's champion cannot be loaded, or
raises while scoring a component, the previous champion version scores that component.
When that fails too, the statistical detector alone scores it: a robust z-score of the
residual features (the ``robust_z`` ensemble member), fitted on the component's
``FALLBACK_LOOKBACK`` of telemetry before the first point to score. Every
fallback logs a warning with the component, the failed version and the reason, and
the score rows name the model used (``model_version``) and its role (``model_role``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import pandas as pd

from predictor.config import Settings
from predictor.exceptions import ModelNotFoundError
from predictor.lifecycle import registry
from predictor.model import ComponentModel, FleetModel
from predictor.telemetry import TelemetryStore
from predictor.training import fit_component

logger = logging.getLogger(__name__)

ROLE_CHAMPION = "champion"
ROLE_PREVIOUS = "previous_champion"
ROLE_STATISTICAL = "statistical_fallback"
ROLE_CHALLENGER = "challenger"
MODEL_ROLES = (ROLE_CHAMPION, ROLE_PREVIOUS, ROLE_STATISTICAL, ROLE_CHALLENGER)

#: Telemetry the statistical fallback is fitted on, ending at the first point to score.
FALLBACK_LOOKBACK = pd.Timedelta(days=7)
STATISTICAL_MEMBER = "robust_z"


@dataclass
class Candidate:
    """A model that can score a component, or why it cannot."""

    role: str
    label: str
    model: ComponentModel | None = None
    error: str | None = None


@dataclass
class GroupModels:
    """The versions one registered model serves, loaded lazily and cached."""

    name: str
    champion: str | None
    challenger: str | None
    previous: str | None
    fleets: dict[str, FleetModel | Exception] = field(default_factory=dict)

    def label(self, version: str) -> str:
        """``"<name>/<version>"``."""
        return f"{self.name}/{version}"


class ServingSet:
    """Champion, previous champion and challenger of every registered model.

    Build it with :func:`load_serving`, or :meth:`from_fleet` for one already-loaded
    model. Loading errors are kept and turned into fallbacks per component.
    """

    def __init__(self, settings: Settings, groups: list[GroupModels]) -> None:
        self.settings = settings
        self.groups = groups
        self._component_group: dict[str, GroupModels] = {}

    @classmethod
    def from_fleet(cls, settings: Settings, fleet: FleetModel) -> ServingSet:
        """Serve one loaded fleet model as champion, with no previous or challenger."""
        name, _, version = fleet.version.rpartition("/")
        group = GroupModels(name or "fleet", version or "loaded", None, None)
        group.fleets[group.champion or ""] = fleet
        serving = cls(settings, [group])
        serving._component_group = dict.fromkeys(fleet.components, group)
        return serving

    def _fleet(self, group: GroupModels, version: str) -> FleetModel | Exception:
        if version not in group.fleets:
            try:
                group.fleets[version] = registry.load_version(self.settings, group.name, version)
            except Exception as error:  # any loading failure turns into a fallback
                logger.warning(
                    "serving: %s could not be loaded: %s: %s",
                    group.label(version),
                    type(error).__name__,
                    error,
                )
                group.fleets[version] = error
        return group.fleets[version]

    def resolve_components(self, telemetry: TelemetryStore) -> list[str]:
        """Return every component some registered model serves, and remember its group.

        A group whose champion and previous champion both fail to load serves the
        components that the configuration and the telemetry put in it.
        """
        if self._component_group:
            return sorted(self._component_group)
        by_name = registry.component_groups(self.settings, telemetry.components())
        for group in self.groups:
            components: Iterable[str] = ()
            for version in (group.champion, group.previous):
                fleet = self._fleet(group, version) if version else None
                if isinstance(fleet, FleetModel):
                    components = fleet.components
                    break
            else:
                components = by_name.get(group.name, [])
            for component in components:
                self._component_group[component] = group
        return sorted(self._component_group)

    def candidates(self, component: str) -> list[Candidate]:
        """Return the champion then the previous champion for ``component``."""
        group = self._component_group[component]
        result = []
        for role, version in ((ROLE_CHAMPION, group.champion), (ROLE_PREVIOUS, group.previous)):
            if version is None:
                continue
            fleet = self._fleet(group, version)
            candidate = Candidate(role, group.label(version))
            if isinstance(fleet, Exception):
                candidate.error = f"{type(fleet).__name__}: {fleet}"
            elif component not in fleet.components:
                candidate.error = "the version has no model of this component"
            else:
                candidate.model = fleet.components[component]
            result.append(candidate)
        return result

    def challenger(self, component: str) -> Candidate | None:
        """Return the shadow challenger of ``component``, or None."""
        group = self._component_group.get(component)
        if group is None or group.challenger is None or group.challenger == group.champion:
            return None
        fleet = self._fleet(group, group.challenger)
        if isinstance(fleet, Exception) or component not in fleet.components:
            return None
        return Candidate(
            ROLE_CHALLENGER, group.label(group.challenger), fleet.components[component]
        )

    def group_of(self, component: str) -> str | None:
        """Return the declared group of ``component``."""
        declared = self.settings.component(component)
        return declared.group if declared else None


def load_serving(settings: Settings) -> ServingSet:
    """Read the aliases of every registered model; models load on first use.

    Raises
    ------
    ModelNotFoundError
        If no registered model has a champion.
    """
    groups = []
    for name in registry.registered_model_names(settings):
        champion = registry.champion_version(settings, name)
        if champion is None:
            continue
        groups.append(
            GroupModels(
                name,
                champion,
                registry.challenger_version(settings, name),
                registry.previous_champion(settings, name),
            )
        )
    if not groups:
        raise ModelNotFoundError(
            f"no model registered as {settings.registered_model_name}[-<group>]@"
            f"{registry.CHAMPION_ALIAS} in {settings.mlflow_tracking_uri}; "
            "run `predictor train` first"
        )
    return ServingSet(settings, groups)


def fit_statistical(
    settings: Settings, telemetry: TelemetryStore, component: str, end: pd.Timestamp
) -> Candidate:
    """Fit the ``robust_z`` detector alone on ``component``'s telemetry up to ``end``."""
    label = f"statistical:{STATISTICAL_MEMBER}@{end.isoformat()}"
    rows = telemetry.read(components=[component], start=end - FALLBACK_LOOKBACK, end=end)
    if rows.empty:
        return Candidate(ROLE_STATISTICAL, label, error=f"no telemetry in the week before {end}")
    fallback_settings = dataclasses.replace(
        settings,
        model=dataclasses.replace(settings.model, members=(STATISTICAL_MEMBER,)),
        thresholds=(),
    )
    try:
        model = fit_component(component, rows, fallback_settings)
    except Exception as error:  # the last resort reports why it could not be fitted
        return Candidate(ROLE_STATISTICAL, label, error=f"{type(error).__name__}: {error}")
    return Candidate(ROLE_STATISTICAL, label, model)
