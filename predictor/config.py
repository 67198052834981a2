"""Deployment settings from ``predictor.toml`` and ``PREDICTOR_*`` environment variables.

The settings are parsed and validated once into a frozen :class:`Settings` object.
Every error names the file, key or environment variable and the value it received.

Environment variables
---------------------
PREDICTOR_CONFIG
    Path of the TOML file. Default: ``predictor.toml`` in the working directory when it
    exists, else the sample configuration shipped in ``data/predictor.toml``.
PREDICTOR_HOME
    Folder that contains all state. Default: ``./.predictor``.
PREDICTOR_STORE_URL
    SQLAlchemy URL of the risk store. Default: ``sqlite:///$PREDICTOR_HOME/risk.db``.
MLFLOW_TRACKING_URI
    MLflow tracking and registry store. Default: ``sqlite:///$PREDICTOR_HOME/mlflow.db``
    with artifacts in ``$PREDICTOR_HOME/mlartifacts``.
PREDICTOR_<SECTION>__<KEY>
    Overrides one key of a table section, for example ``PREDICTOR_LEVELS__CRITICAL=0.9``
    or ``PREDICTOR_MODEL__RANDOM_STATE=7``. The value is read as a TOML value when it
    parses as one, else as a string.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from predictor.exceptions import ConfigError

SOURCE_FORMATS = ("long", "wide", "nab", "matrix")
SOURCE_ROLES = ("train", "replay", "split")
LABEL_FORMATS = ("nab", "rows")
HOOK_TYPES = ("webhook", "command")
LEVELS = ("normal", "elevated", "high", "critical")
DEFAULT_CONFIG_NAME = "predictor.toml"


@dataclass(frozen=True)
class SourceConfig:
    """One telemetry input file and how to read it.

    ``role`` sets which part of the timeline the file is: ``train`` (fit models on it),
    ``replay`` (score it forward in time order) or ``split`` (the first
    ``train_fraction`` of its rows train, capped at ``max_train_rows``; the rest replay).
    """

    name: str
    format: str
    path: Path
    role: str = "replay"
    component: str | None = None
    component_column: str | None = None
    timestamp_column: str = "timestamp"
    metric: str = "value"
    metric_names: tuple[str, ...] = ()
    metric_names_path: Path | None = None
    start: str | None = None
    step_seconds: float | None = None
    row_offset: int = 0
    timezone: str | None = None
    order_column: str | None = None
    epoch_unit: str | None = None
    decimal: str = "."
    thousands: str | None = None
    train_fraction: float | None = None
    max_train_rows: int | None = None
    labels_path: Path | None = None
    labels_format: str | None = None
    labels_key: str | None = None
    windows_path: Path | None = None


@dataclass(frozen=True)
class ComponentConfig:
    """A known component, its failure domain and optionally its allowed metrics."""

    name: str
    group: str | None = None
    metrics: tuple[str, ...] = ()


@dataclass(frozen=True)
class ThresholdConfig:
    """A metric limit whose crossing within the horizon counts as a degradation."""

    metric: str
    value: float
    component: str = "*"
    direction: str = "above"

    def applies_to(self, component: str, metric: str) -> bool:
        """Return whether this threshold covers the given component and metric."""
        return self.metric == metric and self.component in ("*", component)


@dataclass(frozen=True)
class ModelConfig:
    """Model knobs: ensemble members, feature windows, forecast horizon."""

    members: tuple[str, ...] = ("iforest", "ecod", "knn", "pca", "robust_z")
    fusion: str = "max"
    step_seconds: float | None = None
    window_steps: int = 12
    smoothing_span: int = 5
    season_minutes: float | None = None
    horizon_minutes: float = 60.0
    max_train_rows: int = 5000
    n_estimators: int = 100
    n_neighbors: int = 5
    random_state: int = 0


@dataclass(frozen=True)
class LevelConfig:
    """Risk thresholds per level, their hysteresis and the staleness rule."""

    elevated: float = 0.5
    high: float = 0.7
    critical: float = 0.85
    exit_margin: float = 0.1
    enter_consecutive: int = 3
    exit_consecutive: int = 6
    stale_after_steps: int = 3

    def enter_threshold(self, level: str) -> float:
        """Return the risk at or above which ``level`` is entered."""
        return {
            "normal": 0.0,
            "elevated": self.elevated,
            "high": self.high,
            "critical": self.critical,
        }[level]


@dataclass(frozen=True)
class LifecycleConfig:
    """The quality gate between a newly trained model and the serving champion.

    Attributes
    ----------
    holdout_days : float or None
        Length of the holdout window that ends at the training cut-off. None uses the
        last ``holdout_fraction`` of each component's training window instead.
    holdout_fraction : float
        Share of each component's training window held out when ``holdout_days`` is None.
    tolerance : float
        How much worse than the champion a challenger may be and still be promoted: the
        largest drop of AUC-PR, or the largest rise of the alarm rate, as an absolute
        difference in [0, 1).
    """

    holdout_days: float | None = None
    holdout_fraction: float = 0.2
    tolerance: float = 0.02


@dataclass(frozen=True)
class HookConfig:
    """A failover hook: where to send a level change and how often at most."""

    name: str
    type: str
    url: str | None = None
    argv: tuple[str, ...] = ()
    on_levels: tuple[str, ...] = ("critical",)
    cooldown_minutes: float = 60.0
    timeout_seconds: float = 10.0
    payload_via: str = "stdin"
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Settings:
    """Every deployment setting, validated.

    Build it with :func:`load_settings`; do not construct it by hand outside tests.
    """

    home: Path
    store_url: str
    mlflow_tracking_uri: str
    mlflow_artifact_uri: str
    config_path: Path | None
    sources: tuple[SourceConfig, ...] = ()
    components: tuple[ComponentConfig, ...] = ()
    thresholds: tuple[ThresholdConfig, ...] = ()
    model: ModelConfig = field(default_factory=ModelConfig)
    levels: LevelConfig = field(default_factory=LevelConfig)
    hooks: tuple[HookConfig, ...] = ()
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    registered_model_name: str = "predictor-fleet"
    experiment_name: str = "predictor"

    @property
    def telemetry_dir(self) -> Path:
        """Folder of the partitioned Parquet telemetry store."""
        return self.home / "telemetry"

    @property
    def quarantine_dir(self) -> Path:
        """Folder of rejected input rows with their reasons."""
        return self.home / "quarantine"

    def component(self, name: str) -> ComponentConfig | None:
        """Return the declared component called ``name``, or None."""
        for component in self.components:
            if component.name == name:
                return component
        return None

    def thresholds_for(self, component: str) -> list[ThresholdConfig]:
        """Return the thresholds that apply to ``component``, one per metric."""
        by_metric: dict[str, ThresholdConfig] = {}
        for threshold in self.thresholds:
            if threshold.component in ("*", component):
                # A component-specific threshold wins over the fleet-wide one.
                current = by_metric.get(threshold.metric)
                if current is None or current.component == "*":
                    by_metric[threshold.metric] = threshold
        return list(by_metric.values())


def _default_config_path() -> Path | None:
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    if local.is_file():
        return local
    shipped = Path(__file__).resolve().parent.parent / "data" / DEFAULT_CONFIG_NAME
    if shipped.is_file():
        return shipped
    return None


def _parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"value = {raw}")["value"]
    except tomllib.TOMLDecodeError:
        return raw


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in sorted(environ.items()):
        if not name.startswith("PREDICTOR_") or "__" not in name:
            continue
        section, _, key = name[len("PREDICTOR_") :].partition("__")
        section, key = section.lower(), key.lower()
        if section not in ("model", "levels", "lifecycle"):
            raise ConfigError(
                f"environment variable {name}: unknown section {section!r}; "
                "expected PREDICTOR_MODEL__<KEY>, PREDICTOR_LEVELS__<KEY> or "
                "PREDICTOR_LIFECYCLE__<KEY>"
            )
        raw.setdefault(section, {})[key] = _parse_env_value(value)


def _build(cls: type, values: Mapping[str, Any], where: str, base: Path | None) -> Any:
    """Build the dataclass ``cls`` from a TOML table, checking keys and value types."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; expected one of {sorted(known)}")

    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        annotation = str(known[key].type)
        kwargs[key] = _coerce(value, annotation, f"{where}.{key}", base)
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None


def _coerce(value: Any, annotation: str, where: str, base: Path | None) -> Any:
    if value is None:
        return None
    if annotation.startswith("Path"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a path string, got {value!r}")
        path = Path(value).expanduser()
        if not path.is_absolute() and base is not None:
            path = base / path
        return path
    if annotation.startswith("tuple"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return tuple(value)
    if annotation.startswith("float"):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation.startswith("int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation.startswith("str"):
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if annotation.startswith("Mapping"):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{where}: expected a table of strings, got {value!r}")
        return dict(value)
    return value


def _require_choice(value: str | None, choices: tuple[str, ...], where: str) -> None:
    if value is not None and value not in choices:
        raise ConfigError(f"{where}: expected one of {list(choices)}, got {value!r}")


def _validate_model(model: ModelConfig) -> None:
    known_members = (
        *("iforest", "ecod", "knn", "pca", "copod", "hbos", "lof", "abod"),
        *("robust_z", "channel"),
    )
    for member in model.members:
        _require_choice(member, known_members, "model.members")
    if len(model.members) == 0:
        raise ConfigError("model.members: expected at least one detector, got []")
    _require_choice(model.fusion, ("max", "mean"), "model.fusion")
    positive = {
        "window_steps": model.window_steps,
        "smoothing_span": model.smoothing_span,
        "horizon_minutes": model.horizon_minutes,
        "max_train_rows": model.max_train_rows,
        "n_estimators": model.n_estimators,
        "n_neighbors": model.n_neighbors,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"model.{key}: expected a positive number, got {value!r}")
    for key in ("step_seconds", "season_minutes"):
        value = getattr(model, key)
        if value is not None and value <= 0:
            raise ConfigError(f"model.{key}: expected a positive number, got {value!r}")


def _validate_levels(levels: LevelConfig) -> None:
    ordered = [levels.elevated, levels.high, levels.critical]
    if not all(0.0 < value <= 1.0 for value in ordered) or ordered != sorted(set(ordered)):
        raise ConfigError(
            "levels: expected 0 < elevated < high < critical <= 1, got "
            f"elevated={levels.elevated!r}, high={levels.high!r}, critical={levels.critical!r}"
        )
    if not 0.0 <= levels.exit_margin < levels.elevated:
        raise ConfigError(
            f"levels.exit_margin: expected a number in [0, elevated), got {levels.exit_margin!r}"
        )
    for key in ("enter_consecutive", "exit_consecutive", "stale_after_steps"):
        if getattr(levels, key) < 1:
            raise ConfigError(
                f"levels.{key}: expected an integer >= 1, got {getattr(levels, key)!r}"
            )


def _validate_lifecycle(lifecycle: LifecycleConfig) -> None:
    if lifecycle.holdout_days is not None and lifecycle.holdout_days <= 0:
        raise ConfigError(
            f"lifecycle.holdout_days: expected a positive number of days, "
            f"got {lifecycle.holdout_days!r}"
        )
    if not 0.0 < lifecycle.holdout_fraction < 1.0:
        raise ConfigError(
            f"lifecycle.holdout_fraction: expected a number in (0, 1), "
            f"got {lifecycle.holdout_fraction!r}"
        )
    if not 0.0 <= lifecycle.tolerance < 1.0:
        raise ConfigError(
            f"lifecycle.tolerance: expected a number in [0, 1), got {lifecycle.tolerance!r}"
        )


def _validate_source(source: SourceConfig, where: str) -> None:
    _require_choice(source.format, SOURCE_FORMATS, f"{where}.format")
    _require_choice(source.role, SOURCE_ROLES, f"{where}.role")
    _require_choice(source.labels_format, LABEL_FORMATS, f"{where}.labels_format")
    if source.format in ("nab", "matrix") and source.component is None:
        raise ConfigError(f"{where}.component: required for format {source.format!r}")
    if source.format == "matrix":
        if source.start is None or source.step_seconds is None:
            raise ConfigError(f"{where}: format 'matrix' needs 'start' and 'step_seconds'")
        if not source.metric_names and source.metric_names_path is None:
            raise ConfigError(
                f"{where}: format 'matrix' needs 'metric_names' or 'metric_names_path'"
            )
    if source.role == "split" and source.train_fraction is None:
        raise ConfigError(f"{where}.train_fraction: required when role is 'split'")
    if source.train_fraction is not None and not 0.0 < source.train_fraction < 1.0:
        raise ConfigError(
            f"{where}.train_fraction: expected a number in (0, 1), got {source.train_fraction!r}"
        )


def _validate_hook(hook: HookConfig, where: str) -> None:
    _require_choice(hook.type, HOOK_TYPES, f"{where}.type")
    _require_choice(hook.payload_via, ("stdin", "env"), f"{where}.payload_via")
    for level in hook.on_levels:
        _require_choice(level, LEVELS, f"{where}.on_levels")
    if hook.type == "webhook" and not hook.url:
        raise ConfigError(f"{where}.url: required for a webhook hook")
    if hook.type == "command" and not hook.argv:
        raise ConfigError(f"{where}.argv: required for a command hook, as a list of strings")
    if hook.cooldown_minutes < 0 or hook.timeout_seconds <= 0:
        raise ConfigError(f"{where}: expected cooldown_minutes >= 0 and timeout_seconds > 0")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None


def load_settings(
    config_path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Load and validate settings from a TOML file and the environment.

    Parameters
    ----------
    config_path : str, Path or None, default=None
        The TOML file. None reads ``PREDICTOR_CONFIG``, then ``./predictor.toml``, then
        the sample configuration shipped in ``data/``.
    environ : mapping or None, default=None
        Environment variables; None reads ``os.environ``.
    overrides : mapping or None, default=None
        Top-level TOML tables that replace those from the file, used by tests and by
        Airflow params.

    Returns
    -------
    Settings

    Raises
    ------
    ConfigError
        If the file is missing or invalid, or a key or value is unknown or out of range.
    """
    env = os.environ if environ is None else environ

    if config_path is None and env.get("PREDICTOR_CONFIG"):
        config_path = env["PREDICTOR_CONFIG"]
    path = Path(config_path) if config_path is not None else _default_config_path()
    raw: dict[str, Any] = _read_toml(path) if path is not None else {}
    raw.update(overrides or {})
    _apply_env_overrides(raw, env)

    try:
        return _parse_settings(raw, path, env)
    except ConfigError as error:
        # Name the file in every message, unless the message already does.
        if path is not None and str(path) not in str(error):
            raise ConfigError(f"{path}: {error}") from None
        raise


def _parse_settings(raw: dict[str, Any], path: Path | None, env: Mapping[str, str]) -> Settings:
    """Build and validate :class:`Settings` from the merged TOML tables."""
    base = path.resolve().parent if path is not None else None
    known_sections = {
        "predictor",
        "sources",
        "components",
        "thresholds",
        "model",
        "levels",
        "hooks",
        "lifecycle",
    }
    unknown = sorted(set(raw) - known_sections)
    if unknown:
        raise ConfigError(
            f"{path}: unknown section {unknown[0]!r}; expected one of {sorted(known_sections)}"
        )

    general = dict(raw.get("predictor", {}))
    home = Path(env.get("PREDICTOR_HOME") or general.pop("home", ".predictor")).expanduser()
    general.pop("home", None)
    home = home.resolve()
    store_url = env.get("PREDICTOR_STORE_URL") or f"sqlite:///{home / 'risk.db'}"
    tracking_uri = env.get("MLFLOW_TRACKING_URI") or f"sqlite:///{home / 'mlflow.db'}"
    artifact_uri = (home / "mlartifacts").as_uri()
    registered_model_name = general.pop("registered_model_name", "predictor-fleet")
    experiment_name = general.pop("experiment_name", "predictor")
    if general:
        raise ConfigError(
            f"{path}: [predictor] unknown key {sorted(general)[0]!r}; expected "
            "'home', 'registered_model_name' or 'experiment_name'"
        )

    sources = tuple(
        _build(SourceConfig, table, f"sources[{i}]", base)
        for i, table in enumerate(_table_list(raw, "sources", path))
    )
    for i, source in enumerate(sources):
        _validate_source(source, f"sources[{i}]")
    components = tuple(
        _build(ComponentConfig, table, f"components[{i}]", base)
        for i, table in enumerate(_table_list(raw, "components", path))
    )
    thresholds = tuple(
        _build(ThresholdConfig, table, f"thresholds[{i}]", base)
        for i, table in enumerate(_table_list(raw, "thresholds", path))
    )
    for i, threshold in enumerate(thresholds):
        _require_choice(threshold.direction, ("above", "below"), f"thresholds[{i}].direction")
    hooks = tuple(
        _build(HookConfig, table, f"hooks[{i}]", base)
        for i, table in enumerate(_table_list(raw, "hooks", path))
    )
    for i, hook in enumerate(hooks):
        _validate_hook(hook, f"hooks[{i}]")
    model = _build(ModelConfig, raw.get("model", {}), "model", base)
    _validate_model(model)
    levels = _build(LevelConfig, raw.get("levels", {}), "levels", base)
    _validate_levels(levels)
    lifecycle = _build(LifecycleConfig, raw.get("lifecycle", {}), "lifecycle", base)
    _validate_lifecycle(lifecycle)

    return Settings(
        home=home,
        store_url=store_url,
        mlflow_tracking_uri=tracking_uri,
        mlflow_artifact_uri=artifact_uri,
        config_path=path,
        sources=sources,
        components=components,
        thresholds=thresholds,
        model=model,
        levels=levels,
        hooks=hooks,
        lifecycle=lifecycle,
        registered_model_name=registered_model_name,
        experiment_name=experiment_name,
    )


def _table_list(raw: Mapping[str, Any], key: str, path: Path | None) -> list[dict[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{path}: [[{key}]] must be an array of tables, got {value!r}")
    return value
