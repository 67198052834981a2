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
PREDICTOR_API_TOKENS
    Bearer tokens that the risk-score API accepts, separated by commas. Tokens are read
    only from the environment so that they stay out of configuration files.
PREDICTOR_<SECTION>__<KEY>
    Overrides one key of a table section, for example ``PREDICTOR_LEVELS__CRITICAL=0.9``,
    ``PREDICTOR_MODEL__RANDOM_STATE=7`` or ``PREDICTOR_API__METRICS_AUTH=false``. The
    value is read as a TOML value when it parses as one, else as a string.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from predictor.exceptions import ConfigError

SOURCE_FORMATS = ("long", "wide", "nab", "matrix", "openmetrics", "prometheus")
# Formats read from a file at ``path``; the others read a server.
FILE_FORMATS = ("long", "wide", "nab", "matrix", "openmetrics")
# Prometheus rejects a range query that returns more points per series than this.
PROMETHEUS_MAX_POINTS = 11_000
SOURCE_ROLES = ("train", "replay", "split")
LABEL_FORMATS = ("nab", "rows")
HOOK_TYPES = ("webhook", "command", "alertmanager")
#: What a hook is called for: ``failover`` on entry into one of its ``on_levels``,
#: ``fail_back`` when a failed-over component recovers to normal, ``telemetry_stale``
#: when a component's level becomes ``unknown``, ``budget_exceeded`` when a failover
#: budget keeps actions back.
HOOK_KINDS = ("failover", "fail_back", "telemetry_stale", "budget_exceeded")
#: Payload formats of a webhook: the predictor's own schema or Alertmanager's webhook body.
WEBHOOK_FORMATS = ("predictor", "alertmanager")
BUDGET_SCOPES = ("group", "fleet")
LEVELS = ("normal", "elevated", "high", "critical")
DEFAULT_CONFIG_NAME = "predictor.toml"


@dataclass(frozen=True)
class PrometheusQueryConfig:
    """One PromQL query of a Prometheus source and how its series map to long rows.

    ``metric`` is a template filled from each series' labels with :meth:`str.format`,
    for example ``"{__name__}"`` or ``"gpu{gpu}_temp_celsius"``. The component is the
    value of ``component_label`` (the source's when unset), reduced to the first group
    of ``component_regex`` when that is set, or the fixed ``component``. With
    ``raw_counter = true`` the query returns a raw counter and the stored value is its
    per-second rate between consecutive samples, a drop counting as a counter reset.
    """

    query: str
    metric: str = "{__name__}"
    component: str | None = None
    component_label: str | None = None
    component_regex: str | None = None
    raw_counter: bool = False


@dataclass(frozen=True)
class SourceConfig:
    """One telemetry input (a file, or a Prometheus server) and how to read it.

    ``role`` sets which part of the timeline the file is: ``train`` (fit models on it),
    ``replay`` (score it forward in time order) or ``split`` (the first
    ``train_fraction`` of its rows train, capped at ``max_train_rows``; the rest replay).

    The keys from ``url`` on are for ``format = "prometheus"``. ``component_label``,
    ``component_regex`` and ``metric_template`` also apply to ``format =
    "openmetrics"``. See ``docs/telemetry.md``.
    """

    name: str
    format: str
    path: Path | None = None
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
    encoding: str = "utf-8-sig"
    url: str | None = None
    queries: tuple[PrometheusQueryConfig, ...] = ()
    end: str | None = None
    lookback_minutes: float = 60.0
    component_label: str = "instance"
    component_regex: str | None = None
    metric_template: str = "{__name__}"
    max_points_per_request: int = 10_000
    timeout_seconds: float = 30.0
    max_retries: int = 3
    retry_backoff_seconds: float = 1.0
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def location(self) -> str:
        """The file path or the server URL, for messages."""
        return str(self.path) if self.path is not None else str(self.url)


@dataclass(frozen=True)
class ComponentConfig:
    """A known component, its failure domain and optionally its allowed metrics.

    ``key_metrics`` are the metrics without which the component cannot be judged: when
    one of them has no row for ``levels.stale_after_steps`` grid steps, the component is
    scored ``unknown``. Unset, the key metrics are those with a threshold.
    """

    name: str
    group: str | None = None
    metrics: tuple[str, ...] = ()
    key_metrics: tuple[str, ...] | None = None


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

    members: tuple[str, ...] = ("iforest", "knn", "knn_log", "channel")
    fusion: str = "max"
    # Factor in (0, 1] on a member's surprise before fusion, by member name; others keep 1.
    member_weights: Mapping[str, float] = field(
        default_factory=lambda: {"iforest": 0.7, "knn": 0.7}
    )
    step_seconds: float | None = None
    window_steps: int = 12
    smoothing_span: int = 5
    season_minutes: float | None = None
    horizon_minutes: float = 60.0
    max_train_rows: int = 5000
    n_estimators: int = 100
    n_neighbors: int = 5
    random_state: int = 0
    # "component": one anomaly ensemble per component. "group": one ensemble per
    # component group, fitted on the group's features after each component's own
    # standardization, so that a fleet of thousands of components trains and scores a
    # handful of ensembles.
    sharing: str = "component"
    # With sharing "group": the most training rows the group's ensemble is fitted on,
    # drawn evenly from its components.
    max_group_rows: int = 50000


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
class ApiConfig:
    """Settings of ``predictor serve``: authentication and the readiness rule.

    ``tokens`` come from ``PREDICTOR_API_TOKENS`` only and are left out of ``repr``, so
    logging the settings does not print them. ``metrics_auth`` false leaves ``/metrics``
    open for a Prometheus server without credentials. ``/readyz`` reports the store as
    stale when its newest score is older than twice ``scoring_interval_minutes``.
    """

    metrics_auth: bool = True
    scoring_interval_minutes: float = 5.0
    tokens: tuple[str, ...] = field(default=(), repr=False)


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
    kind: str = "failover"
    format: str = "predictor"
    dry_run: bool = False
    resolve_timeout_minutes: float = 15.0
    alertname: str = "PredictorFailureRisk"
    # Delivery policy: signing secret, retries with backoff, and the circuit breaker.
    secret_env: str | None = None
    max_attempts: int = 5
    backoff_seconds: float = 5.0
    backoff_max_seconds: float = 900.0
    breaker_failures: int = 5
    breaker_cooldown_seconds: float = 300.0


@dataclass(frozen=True)
class BudgetConfig:
    """A failover budget: how many components of a group, or of the fleet, may fail over.

    ``max_components`` and ``max_percent`` limit the components in failover at once;
    ``max_per_hour`` and ``max_percent_per_hour`` limit the components that enter
    failover within any 60 minutes of scoring time. A percentage is of the components
    of the group (or the fleet) declared in ``[[components]]`` or known to the risk
    store, rounded down. Unset limits do
    not apply. With ``scope = "group"`` and no ``group`` the budget applies to each
    group on its own.
    """

    scope: str = "group"
    group: str | None = None
    max_components: int | None = None
    max_percent: float | None = None
    max_per_hour: int | None = None
    max_percent_per_hour: float | None = None


@dataclass(frozen=True)
class GuardrailConfig:
    """Settings that apply to every hook: ``dry_run`` decides and records, sends nothing."""

    dry_run: bool = False


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
    api: ApiConfig = field(default_factory=ApiConfig)
    budgets: tuple[BudgetConfig, ...] = ()
    guardrails: GuardrailConfig = field(default_factory=GuardrailConfig)
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


#: Settings sections that ``PREDICTOR_<SECTION>__<KEY>`` environment variables may set.
ENV_SECTIONS = ("model", "levels", "lifecycle", "api", "guardrails")


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, value in sorted(environ.items()):
        if not name.startswith("PREDICTOR_") or "__" not in name:
            continue
        section, _, key = name[len("PREDICTOR_") :].partition("__")
        section, key = section.lower(), key.lower()
        if section not in ENV_SECTIONS:
            expected = ", ".join(f"PREDICTOR_{known.upper()}__<KEY>" for known in ENV_SECTIONS)
            raise ConfigError(
                f"environment variable {name}: unknown section {section!r}; expected {expected}"
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
    if annotation.startswith("tuple[PrometheusQueryConfig"):
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ConfigError(f"{where}: expected an array of tables, got {value!r}")
        return tuple(
            _build(PrometheusQueryConfig, table, f"{where}[{i}]", base)
            for i, table in enumerate(value)
        )
    if annotation.startswith("bool"):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
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
    if annotation.startswith("Mapping[str, float]"):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table of numbers, got {value!r}")
        for key, number in value.items():
            if not isinstance(number, int | float) or isinstance(number, bool):
                raise ConfigError(f"{where}.{key}: expected a number, got {number!r}")
        return {key: float(number) for key, number in value.items()}
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
        *("iforest", "ecod", "knn", "knn_log", "pca", "copod", "hbos", "lof", "abod"),
        *("robust_z", "channel"),
    )
    for member in model.members:
        _require_choice(member, known_members, "model.members")
    if len(model.members) == 0:
        raise ConfigError("model.members: expected at least one detector, got []")
    _require_choice(model.fusion, ("max", "mean"), "model.fusion")
    for member, weight in model.member_weights.items():
        _require_choice(member, known_members, "model.member_weights")
        if not 0.0 < weight <= 1.0:
            raise ConfigError(
                f"model.member_weights.{member}: expected a number in (0, 1], got {weight!r}"
            )
    _require_choice(model.sharing, ("component", "group"), "model.sharing")
    positive = {
        "window_steps": model.window_steps,
        "smoothing_span": model.smoothing_span,
        "horizon_minutes": model.horizon_minutes,
        "max_train_rows": model.max_train_rows,
        "n_estimators": model.n_estimators,
        "n_neighbors": model.n_neighbors,
        "max_group_rows": model.max_group_rows,
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


def _parse_api(table: Mapping[str, Any], env: Mapping[str, str], base: Path | None) -> ApiConfig:
    """Build the ``[api]`` settings, with the tokens from ``PREDICTOR_API_TOKENS``."""
    if "tokens" in table:
        raise ConfigError(
            "api.tokens: tokens are not read from the configuration file; "
            "set PREDICTOR_API_TOKENS to a comma-separated list instead"
        )
    api = _build(ApiConfig, table, "api", base)
    if not isinstance(api.metrics_auth, bool):
        raise ConfigError(f"api.metrics_auth: expected true or false, got {api.metrics_auth!r}")
    if api.scoring_interval_minutes <= 0:
        raise ConfigError(
            "api.scoring_interval_minutes: expected a positive number, "
            f"got {api.scoring_interval_minutes!r}"
        )
    raw_tokens = env.get("PREDICTOR_API_TOKENS", "")
    tokens = tuple(token.strip() for token in raw_tokens.split(",") if token.strip())
    for position, token in enumerate(tokens):
        # A token travels in an HTTP header, so it must be printable ASCII without spaces.
        if not token.isascii() or not token.isprintable() or " " in token:
            raise ConfigError(
                f"PREDICTOR_API_TOKENS: token {position + 1} contains a character outside "
                "printable ASCII or a space; use letters, digits and punctuation only"
            )
    return dataclasses.replace(api, tokens=tokens)


def _validate_source(source: SourceConfig, where: str) -> None:
    _require_choice(source.format, SOURCE_FORMATS, f"{where}.format")
    _require_choice(source.role, SOURCE_ROLES, f"{where}.role")
    _require_choice(source.labels_format, LABEL_FORMATS, f"{where}.labels_format")
    if source.format in FILE_FORMATS and source.path is None:
        raise ConfigError(f"{where}.path: required for format {source.format!r}")
    if source.format == "prometheus":
        _validate_prometheus_source(source, where)
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


def _validate_prometheus_source(source: SourceConfig, where: str) -> None:
    if not source.url or not source.url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{where}.url: expected the server's base URL such as "
            f"'http://prometheus:9090' for format 'prometheus', got {source.url!r}"
        )
    if not source.queries:
        raise ConfigError(
            f"{where}.queries: expected at least one [[sources.queries]] table with a "
            "'query' for format 'prometheus'"
        )
    if source.step_seconds is None or source.step_seconds <= 0:
        raise ConfigError(
            f"{where}.step_seconds: expected a positive number of seconds for format "
            f"'prometheus', got {source.step_seconds!r}"
        )
    if not 2 <= source.max_points_per_request <= PROMETHEUS_MAX_POINTS:
        raise ConfigError(
            f"{where}.max_points_per_request: expected an integer in [2, "
            f"{PROMETHEUS_MAX_POINTS}] (the server's limit per series), got "
            f"{source.max_points_per_request!r}"
        )
    positive = {
        "lookback_minutes": source.lookback_minutes,
        "timeout_seconds": source.timeout_seconds,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{where}.{key}: expected a positive number, got {value!r}")
    if source.max_retries < 0 or source.retry_backoff_seconds < 0:
        raise ConfigError(
            f"{where}: expected max_retries >= 0 and retry_backoff_seconds >= 0, got "
            f"{source.max_retries!r} and {source.retry_backoff_seconds!r}"
        )


def _validate_hook(hook: HookConfig, where: str) -> None:
    _require_choice(hook.type, HOOK_TYPES, f"{where}.type")
    _require_choice(hook.kind, HOOK_KINDS, f"{where}.kind")
    _require_choice(hook.format, WEBHOOK_FORMATS, f"{where}.format")
    _require_choice(hook.payload_via, ("stdin", "env"), f"{where}.payload_via")
    # An Alertmanager hook may also raise an alert for components whose level is unknown.
    allowed_levels = (*LEVELS, "unknown") if hook.type == "alertmanager" else LEVELS
    for level in hook.on_levels:
        _require_choice(level, allowed_levels, f"{where}.on_levels")
    if hook.type in ("webhook", "alertmanager") and not hook.url:
        raise ConfigError(f"{where}.url: required for a {hook.type} hook")
    if hook.type == "alertmanager" and not hook.url.startswith(("http://", "https://")):
        raise ConfigError(
            f"{where}.url: expected the Alertmanager base address such as "
            f"'http://alertmanager:9093', got {hook.url!r}"
        )
    if hook.type == "command" and not hook.argv:
        raise ConfigError(f"{where}.argv: required for a command hook, as a list of strings")
    if hook.format != "predictor" and hook.type != "webhook":
        raise ConfigError(
            f"{where}.format: {hook.format!r} applies to webhook hooks only, "
            f"got it on a {hook.type} hook"
        )
    if hook.type == "alertmanager" and hook.kind != "failover":
        raise ConfigError(
            f"{where}.kind: an alertmanager hook raises alerts for its on_levels and "
            f"resolves them on recovery, so its kind must be 'failover', got {hook.kind!r}"
        )
    if hook.cooldown_minutes < 0 or hook.timeout_seconds <= 0:
        raise ConfigError(f"{where}: expected cooldown_minutes >= 0 and timeout_seconds > 0")
    if hook.resolve_timeout_minutes <= 0:
        raise ConfigError(
            f"{where}.resolve_timeout_minutes: expected a positive number of minutes, "
            f"got {hook.resolve_timeout_minutes!r}"
        )
    if not hook.alertname:
        raise ConfigError(
            f"{where}.alertname: expected a non-empty string, got {hook.alertname!r}"
        )
    _validate_delivery(hook, where)


def _validate_budget(budget: BudgetConfig, where: str) -> None:
    _require_choice(budget.scope, BUDGET_SCOPES, f"{where}.scope")
    if budget.scope == "fleet" and budget.group is not None:
        raise ConfigError(
            f"{where}.group: a fleet budget covers every component, so it takes no group; "
            f'got {budget.group!r}. Use scope = "group" to limit one group'
        )
    limits = {
        "max_components": budget.max_components,
        "max_percent": budget.max_percent,
        "max_per_hour": budget.max_per_hour,
        "max_percent_per_hour": budget.max_percent_per_hour,
    }
    if all(value is None for value in limits.values()):
        raise ConfigError(f"{where}: expected at least one of {sorted(limits)}, got none")
    for key in ("max_components", "max_per_hour"):
        if limits[key] is not None and limits[key] < 0:
            raise ConfigError(f"{where}.{key}: expected an integer >= 0, got {limits[key]!r}")
    for key in ("max_percent", "max_percent_per_hour"):
        if limits[key] is not None and not 0.0 <= limits[key] <= 100.0:
            raise ConfigError(
                f"{where}.{key}: expected a percentage in [0, 100], got {limits[key]!r}"
            )


def _validate_delivery(hook: HookConfig, where: str) -> None:
    for key in ("max_attempts", "breaker_failures"):
        value = getattr(hook, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{where}.{key}: expected an integer >= 1, got {value!r}")
    for key in ("backoff_seconds", "backoff_max_seconds", "breaker_cooldown_seconds"):
        value = getattr(hook, key)
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ConfigError(f"{where}.{key}: expected a number >= 0, got {value!r}")
    if hook.backoff_max_seconds < hook.backoff_seconds:
        raise ConfigError(
            f"{where}.backoff_max_seconds: expected >= backoff_seconds "
            f"({hook.backoff_seconds!r}), got {hook.backoff_max_seconds!r}"
        )
    if hook.secret_env is not None and (
        not isinstance(hook.secret_env, str) or not hook.secret_env.strip()
    ):
        raise ConfigError(
            f"{where}.secret_env: expected the name of an environment variable, "
            f"got {hook.secret_env!r}"
        )


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
        "api",
        "budgets",
        "guardrails",
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
    for i, component in enumerate(components):
        for metric in component.key_metrics or ():
            if component.metrics and metric not in component.metrics:
                raise ConfigError(
                    f"components[{i}].key_metrics: {metric!r} is not in the component's "
                    f"metrics {list(component.metrics)}"
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
    names = [hook.name for hook in hooks]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ConfigError(
                f"hooks[{i}].name: {name!r} is already used by hooks[{names.index(name)}]; "
                "hook names identify the recorded calls, so they must be unique"
            )
    budgets = tuple(
        _build(BudgetConfig, table, f"budgets[{i}]", base)
        for i, table in enumerate(_table_list(raw, "budgets", path))
    )
    for i, budget in enumerate(budgets):
        _validate_budget(budget, f"budgets[{i}]")
    guardrails = _build(GuardrailConfig, raw.get("guardrails", {}), "guardrails", base)
    model = _build(ModelConfig, raw.get("model", {}), "model", base)
    _validate_model(model)
    levels = _build(LevelConfig, raw.get("levels", {}), "levels", base)
    _validate_levels(levels)
    lifecycle = _build(LifecycleConfig, raw.get("lifecycle", {}), "lifecycle", base)
    _validate_lifecycle(lifecycle)
    api = _parse_api(raw.get("api", {}), env, base)

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
        api=api,
        budgets=budgets,
        guardrails=guardrails,
        registered_model_name=registered_model_name,
        experiment_name=experiment_name,
    )


def _table_list(raw: Mapping[str, Any], key: str, path: Path | None) -> list[dict[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ConfigError(f"{path}: [[{key}]] must be an array of tables, got {value!r}")
    return value
