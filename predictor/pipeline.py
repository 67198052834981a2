"""The stages in order: ingest, train, score (with publish and hooks), and the whole run.

The command line, the Airflow tasks and notebooks all call these functions, so a
scheduled run and a manual one do the same work.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from predictor.config import Settings, SourceConfig
from predictor.exceptions import ConfigError, PredictorUserError
from predictor.hooks import dispatch_hooks
from predictor.model import FleetModel
from predictor.progress import progress
from predictor.risk_calibration import (
    CALIBRATION_FILE,
    RiskCalibration,
    fit_risk_calibration,
    load_risk_calibration,
    save_risk_calibration,
)
from predictor.scoring import score_component
from predictor.store import RiskStore
from predictor.telemetry import (
    IngestSummary,
    LabeledFailure,
    TelemetryStore,
    ingest_source,
    labeled_component,
    read_labels,
)
from predictor.tracking import load_champion, log_calibration_run, log_training_run
from predictor.training import TrainingWindow, train_fleet

logger = logging.getLogger(__name__)

TRAINING_WINDOWS_FILE = "training_windows.json"


@dataclass
class TrainResult:
    """Outcome of a training run."""

    run_id: str
    model_version: str
    components: list[str]
    metrics: dict[str, float]


@dataclass
class ScoreResult:
    """Outcome of one scoring cycle."""

    until: pd.Timestamp | None
    scores_written: int = 0
    components_scored: int = 0
    hook_calls: int = 0
    failed_components: dict[str, str] = field(default_factory=dict)


def open_telemetry(settings: Settings) -> TelemetryStore:
    """Return the telemetry store under ``PREDICTOR_HOME``."""
    return TelemetryStore(settings.telemetry_dir)


def open_risk_store(settings: Settings) -> RiskStore:
    """Return the risk store at ``PREDICTOR_STORE_URL`` (SQLite under home by default)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    return RiskStore(settings.store_url)


def select_sources(settings: Settings, names: Sequence[str] | None = None) -> list[SourceConfig]:
    """Return the configured sources called ``names``, or all of them.

    Raises
    ------
    ConfigError
        If a name is not a configured source, or no source is configured.
    """
    if not settings.sources:
        raise ConfigError(f"{settings.config_path}: no [[sources]] configured to ingest")
    if not names:
        return list(settings.sources)
    known = {source.name: source for source in settings.sources}
    missing = [name for name in names if name not in known]
    if missing:
        raise ConfigError(f"unknown source {missing[0]!r}; configured sources: {sorted(known)}")
    return [known[name] for name in names]


def ingest(
    settings: Settings,
    sources: Sequence[SourceConfig] | None = None,
    telemetry: TelemetryStore | None = None,
) -> list[IngestSummary]:
    """Ingest each source into the telemetry store and record training windows.

    A source with role ``train`` or ``split`` also records where its training part
    ends, so :func:`train` can find each component's training window later.
    """
    telemetry = telemetry or open_telemetry(settings)
    summaries = []
    windows = _read_training_windows(settings)
    for source in sources if sources is not None else select_sources(settings):
        summary = ingest_source(source, settings, telemetry)
        summaries.append(summary)
        for component in summary.components:
            windows[component] = _later(windows.get(component), summary.train_until)
    _write_training_windows(settings, windows)
    return summaries


def _later(current: str | None, cut: pd.Timestamp | None) -> str | None:
    if cut is None:
        return current
    if current is not None and pd.Timestamp(current) >= cut:
        return current
    return cut.isoformat()


def _read_training_windows(settings: Settings) -> dict[str, str | None]:
    path = settings.home / TRAINING_WINDOWS_FILE
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _write_training_windows(settings: Settings, windows: dict[str, str | None]) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / TRAINING_WINDOWS_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(windows, indent=2, sort_keys=True), encoding="utf-8")
    temporary.replace(path)


def training_windows(
    settings: Settings,
    until: pd.Timestamp | None = None,
    lookback_days: float | None = None,
) -> dict[str, TrainingWindow]:
    """Return each component's training window.

    With ``until``, every component trains on rows before it (and after
    ``until - lookback_days`` when given). Without it, the training cut recorded at
    ingest from the sources' roles is used, and components without one train on all
    their rows.
    """
    if until is not None:
        start = until - pd.Timedelta(days=lookback_days) if lookback_days else None
        return {
            component: TrainingWindow(start, until - pd.Timedelta(1, "ns"))
            for component in open_telemetry(settings).components()
        }

    windows = {}
    for component, cut in _read_training_windows(settings).items():
        if cut is None:
            continue
        end = pd.Timestamp(cut) - pd.Timedelta(1, "ns")
        start = end - pd.Timedelta(days=lookback_days) if lookback_days else None
        windows[component] = TrainingWindow(start, end)
    return windows


def train(
    settings: Settings,
    until: pd.Timestamp | None = None,
    lookback_days: float | None = None,
    components: Sequence[str] | None = None,
) -> TrainResult:
    """Train every component's models and log them to MLflow as the new champion."""
    telemetry = open_telemetry(settings)
    windows = training_windows(settings, until, lookback_days)
    fleet, metrics = train_fleet(settings, telemetry, windows, components)
    if not fleet.components:
        raise PredictorUserError("no component had training data; nothing was trained")
    run_id, version = log_training_run(
        settings,
        fleet,
        params=fleet.params,
        metrics=metrics,
        tags={"predictor.components": str(len(fleet.components))},
    )
    return TrainResult(run_id, version, sorted(fleet.components), metrics)


def latest_telemetry_time(
    telemetry: TelemetryStore, components: Sequence[str]
) -> pd.Timestamp | None:
    """Return the newest telemetry timestamp over ``components``."""
    times = [telemetry.last_timestamp(component) for component in components]
    known = [time for time in times if time is not None]
    return max(known) if known else None


def score(
    settings: Settings,
    until: pd.Timestamp | None = None,
    *,
    dry_run: bool = False,
    fleet: FleetModel | None = None,
    telemetry: TelemetryStore | None = None,
    store: RiskStore | None = None,
    components: Sequence[str] | None = None,
) -> ScoreResult:
    """Score trained components up to ``until``, publish the scores, call hooks.

    Parameters
    ----------
    settings : Settings
    until : pandas.Timestamp or None, default=None
        Last time to score; None scores up to the newest telemetry in the store.
    dry_run : bool, default=False
        Decide and record hook calls without sending them.
    fleet, telemetry, store : optional
        Already-open model, telemetry store and risk store; loaded when None.
    components : sequence of str or None, default=None
        Score only these components (one shard of the fleet); None scores every
        trained component. Each component is scored the same way whichever shard it
        is in.

    Returns
    -------
    ScoreResult
        Counts, and the components whose scoring failed with the error, so one bad
        component does not stop the others from publishing.
    """
    fleet = fleet or load_champion(settings)
    telemetry = telemetry or open_telemetry(settings)
    store = store or open_risk_store(settings)
    components = _select_components(fleet, components)
    until = until if until is not None else latest_telemetry_time(telemetry, components)
    result = ScoreResult(until=until)
    if until is None:
        logger.warning("score: no telemetry for any trained component; nothing scored")
        return result

    calibration = active_calibration(settings)
    started = time.perf_counter()
    for component in components:
        model = fleet.components[component]
        try:
            scored = score_component(
                model,
                telemetry,
                store.last_score(component),
                until,
                settings,
                fleet.version,
                calibration,
            )
        except (ValueError, KeyError, FloatingPointError) as error:
            logger.exception("score: component %s failed; other components go on", component)
            result.failed_components[component] = str(error)
            continue
        if scored.records.empty:
            continue
        result.scores_written += store.write_scores(scored.records)
        result.components_scored += 1
        if scored.events and settings.hooks:
            calls = dispatch_hooks(
                scored.events, settings.hooks, store, home=settings.home, dry_run=dry_run
            )
            result.hook_calls += len(calls)

    logger.info(
        "score: %d components, %d scores written, %d hook calls, %d failed, up to %s in %.1f s",
        result.components_scored,
        result.scores_written,
        result.hook_calls,
        len(result.failed_components),
        until,
        time.perf_counter() - started,
    )
    return result


def _select_components(fleet: FleetModel, names: Sequence[str] | None) -> list[str]:
    if names is None:
        return sorted(fleet.components)
    unknown = sorted(set(names) - set(fleet.components))
    if unknown:
        raise ConfigError(
            f"component {unknown[0]!r} has no trained model in {fleet.version or 'the fleet'}; "
            f"trained components: {len(fleet.components)}"
        )
    return sorted(set(names))


def labeled_failures(settings: Settings) -> dict[str, list[LabeledFailure]]:
    """Return the labeled failures of every component that has a labeled source.

    A component whose labels list no failure maps to an empty list, because its rows
    are known to be failure-free.
    """
    failures: dict[str, list[LabeledFailure]] = {}
    for source in settings.sources:
        if source.labels_path is None:
            continue
        failures.setdefault(labeled_component(source), []).extend(read_labels(source))
    return failures


def calibrate(
    settings: Settings,
    until: pd.Timestamp | None = None,
    *,
    method: str = "isotonic",
    store: RiskStore | None = None,
) -> RiskCalibration:
    """Fit the calibration of the published risk, save it and log it to MLflow.

    Parameters
    ----------
    settings : Settings
    until : pandas.Timestamp or None, default=None
        Cut-off; None uses the newest stored score. Scores whose horizon ends after it
        and failures after it are not read.
    method : {"isotonic", "platt"}, default="isotonic"
    store : RiskStore or None, default=None
        Already-open risk store; opened when None.

    Returns
    -------
    RiskCalibration
        The saved calibration, with its MLflow run id. Scoring uses it from then on.

    Raises
    ------
    PredictorUserError
        If no source has labels, nothing is scored yet, or there are too few labeled
        failures before ``until`` (see :func:`~predictor.risk_calibration.fit_risk_calibration`).
    """
    failures = labeled_failures(settings)
    if not failures:
        raise PredictorUserError(
            "calibrate: no source has labels_path set, so there are no labeled failures "
            "to calibrate against"
        )
    store = store or open_risk_store(settings)
    if until is None:
        latest = store.latest_scores()
        if latest.empty:
            raise PredictorUserError("calibrate: the risk store has no scores; run score first")
        until = latest["scored_at"].max()

    calibration = fit_risk_calibration(
        store, failures, until, settings.model.horizon_minutes, method=method
    )
    path = settings.home / CALIBRATION_FILE
    save_risk_calibration(calibration, path)
    run_id = log_calibration_run(settings, calibration, path)
    calibration = dataclasses.replace(calibration, run_id=run_id)
    save_risk_calibration(calibration, path)
    logger.info("calibrate: saved %s (MLflow run %s)", path, run_id)
    return calibration


def active_calibration(settings: Settings) -> RiskCalibration | None:
    """Return the saved risk calibration, or None when there is none or it does not fit.

    A calibration fitted for another horizon than ``settings.model.horizon_minutes`` is
    not applied, because its probabilities refer to that other horizon.
    """
    calibration = load_risk_calibration(settings.home / CALIBRATION_FILE)
    if calibration is None:
        return None
    if calibration.horizon_minutes != settings.model.horizon_minutes:
        logger.warning(
            "score: calibration in %s is for a %g min horizon, the model horizon is %g min; "
            "publishing uncalibrated risk until `predictor calibrate` runs again",
            settings.home / CALIBRATION_FILE,
            calibration.horizon_minutes,
            settings.model.horizon_minutes,
        )
        return None
    return calibration


def replay(
    settings: Settings,
    chunk: pd.Timedelta,
    *,
    dry_run: bool = False,
) -> list[ScoreResult]:
    """Score the stored telemetry forward in time, one scoring cycle per ``chunk``.

    Each cycle scores what a scheduled run at that time would have seen, so levels,
    hysteresis and hooks behave as they would live.
    """
    fleet = load_champion(settings)
    telemetry = open_telemetry(settings)
    store = open_risk_store(settings)
    if latest_telemetry_time(telemetry, sorted(fleet.components)) is None:
        raise PredictorUserError("no telemetry to replay; run `predictor ingest` first")
    cycle_ends = _replay_cycle_ends(fleet, telemetry, chunk)
    results = []
    for cycle_end in progress(cycle_ends, desc="replay", unit="cycle"):
        results.append(
            score(
                settings, cycle_end, dry_run=dry_run, fleet=fleet, telemetry=telemetry, store=store
            )
        )
    store.close()
    return results


def _replay_cycle_ends(
    fleet: FleetModel, telemetry: TelemetryStore, chunk: pd.Timedelta
) -> list[pd.Timestamp]:
    """Return the end of every scoring cycle that has new telemetry for some component.

    Components can cover different periods (the sample fleet spans 2013 to 2024), so
    cycles run from each component's end of training to its last row, and the spans
    between components' periods are skipped instead of replayed day by day.
    """
    ends: set[pd.Timestamp] = set()
    for component, model in fleet.components.items():
        last = telemetry.last_timestamp(component)
        if last is None or last <= model.train_end:
            continue
        ends.update(pd.date_range(model.train_end + chunk, last, freq=chunk))
        ends.add(last)
    return sorted(ends)


def home_summary(settings: Settings) -> dict[str, Path]:
    """Return where the state of this deployment lives."""
    return {
        "telemetry": settings.telemetry_dir,
        "quarantine": settings.quarantine_dir,
        "risk store": Path(settings.store_url.removeprefix("sqlite:///")),
        "mlflow": Path(settings.mlflow_tracking_uri.removeprefix("sqlite:///")),
    }
