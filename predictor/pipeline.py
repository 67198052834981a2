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

from predictor.batch_scoring import score_shared_batch
from predictor.config import Settings, SourceConfig
from predictor.exceptions import ConfigError, PredictorUserError
from predictor.hooks import DeliveryReport, HookEvent, decide_actions, deliver_pending
from predictor.hooks.alertmanager import sync_alertmanager_hooks
from predictor.lifecycle import registry
from predictor.lifecycle.gate import GroupTraining, train_group
from predictor.lifecycle.runs import log_calibration_run
from predictor.lifecycle.serving import (
    ROLE_CHALLENGER,
    ROLE_CHAMPION,
    ROLE_STATISTICAL,
    Candidate,
    ServingSet,
    fit_statistical,
    load_serving,
)
from predictor.model import ComponentModel, FleetModel
from predictor.progress import progress
from predictor.risk_calibration import (
    CALIBRATION_FILE,
    RiskCalibration,
    fit_risk_calibration,
    load_risk_calibration,
    save_risk_calibration,
)
from predictor.scoring import ComponentScores, score_component
from predictor.scoring_runs import record_scoring_run
from predictor.store import RiskStore
from predictor.telemetry import (
    IngestSummary,
    LabeledFailure,
    TelemetryStore,
    ingest_source,
    labeled_component,
    read_labels,
)
from predictor.training import TrainingWindow

logger = logging.getLogger(__name__)

TRAINING_WINDOWS_FILE = "training_windows.json"
# Components scored in one vectorized batch; bounds a cycle's memory.
BATCH_COMPONENTS = 2000


@dataclass
class TrainResult:
    """Outcome of a training run.

    Attributes
    ----------
    run_id : str
        The MLflow run of the trained model; with several registered models (component
        groups), their runs joined by commas.
    model_version : str
        ``"<name>/<version>"`` of the registered version, joined by commas likewise.
    components : list of str
        The trained components.
    metrics : dict
        Training metrics, summed over the groups.
    groups : list of GroupTraining
        Per registered model: its version, whether the gate promoted or rejected it,
        and why.
    """

    run_id: str
    model_version: str
    components: list[str]
    metrics: dict[str, float]
    groups: list[GroupTraining] = field(default_factory=list)


@dataclass
class ScoreResult:
    """Outcome of one scoring cycle."""

    until: pd.Timestamp | None
    scores_written: int = 0
    components_scored: int = 0
    hook_calls: int = 0
    hooks_delivered: int = 0
    hooks_dead: int = 0
    failed_components: dict[str, str] = field(default_factory=dict)
    shadow_scores_written: int = 0
    fallbacks: dict[str, str] = field(default_factory=dict)


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
    recorded = _read_training_windows(settings)
    windows = dict(recorded)
    for source in sources if sources is not None else select_sources(settings):
        summary = ingest_source(source, settings, telemetry)
        summaries.append(summary)
        if summary.train_until is None:
            continue
        for component in summary.components:
            windows[component] = _later(windows.get(component), summary.train_until)
    if windows != recorded:
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
    *,
    gate: bool = True,
) -> TrainResult:
    """Train every component group's model, register it and run the quality gate.

    Each registered model (see :mod:`predictor.lifecycle.registry` for the names) gets
    one MLflow run and version. The first version becomes ``champion`` directly; a later
    one becomes ``challenger``, is compared with the champion on a holdout window (see
    :mod:`predictor.lifecycle.gate`) and is promoted only when it passes.

    Parameters
    ----------
    settings : Settings
    until, lookback_days : optional
        Training window, as in :func:`training_windows`.
    components : sequence of str or None, default=None
        Train only these components; None trains every component in the store.
    gate : bool, default=True
        False promotes every new version without the holdout comparison.

    Raises
    ------
    PredictorUserError
        If no component had training data.
    """
    telemetry = open_telemetry(settings)
    windows = training_windows(settings, until, lookback_days)
    names = sorted(components) if components is not None else telemetry.components()
    if not names:
        raise PredictorUserError(f"no telemetry in {telemetry.root}; run `predictor ingest` first")
    failures = labeled_failures(settings)
    outcomes = []
    for name, members in registry.component_groups(settings, names).items():
        outcome = train_group(settings, telemetry, windows, name, members, failures, gate=gate)
        if outcome is not None:
            outcomes.append(outcome)
    if not outcomes:
        raise PredictorUserError("no component had training data; nothing was trained")
    metrics: dict[str, float] = {}
    for outcome in outcomes:
        for key, value in outcome.metrics.items():
            metrics[key] = metrics.get(key, 0.0) + value
    return TrainResult(
        run_id=",".join(outcome.run_id for outcome in outcomes),
        model_version=",".join(outcome.label for outcome in outcomes),
        components=sorted(c for outcome in outcomes for c in outcome.components),
        metrics=metrics,
        groups=outcomes,
    )


def train_group_model(
    settings: Settings,
    name: str,
    components: Sequence[str],
    until: pd.Timestamp | None = None,
    lookback_days: float | None = None,
    *,
    gate: bool = True,
) -> GroupTraining | None:
    """Train one registered model's components, register the version and run the gate.

    :func:`train` does this for every group in turn, and a worker that trains one
    group calls this. The result is the same as that group's part of :func:`train`.

    Parameters
    ----------
    settings : Settings
    name : str
        The registered model name, as :func:`registry.component_groups` returns it.
    components : sequence of str
        Every component of that group.
    until, lookback_days : optional
        Training window, as in :func:`training_windows`.
    gate : bool, default=True
        False promotes the new version without the holdout comparison.

    Returns
    -------
    GroupTraining or None
        None when no component of the group had rows in its training window.

    Raises
    ------
    ConfigError
        If ``components`` is empty or some component belongs to another registered model.
    """
    names = sorted(set(components))
    if not names:
        raise ConfigError(f"group {name!r}: expected at least one component, got none")
    groups = registry.component_groups(settings, names)
    others = {group: members for group, members in groups.items() if group != name}
    if others:
        listed = "; ".join(
            f"{', '.join(members)} in {group!r}" for group, members in others.items()
        )
        raise ConfigError(
            f"group {name!r}: components belong to other registered models ({listed}); "
            "plan the groups again with the current configuration"
        )

    telemetry = open_telemetry(settings)
    windows = training_windows(settings, until, lookback_days)
    failures = labeled_failures(settings)
    return train_group(settings, telemetry, windows, name, names, failures, gate=gate)


def load_champion(settings: Settings) -> FleetModel:
    """Load the champions of every registered model as one fleet model.

    With one registered model its ``version`` is ``"<name>/<version>"``; with several
    the labels are joined by commas.

    Raises
    ------
    ModelNotFoundError
        If no registered model has a champion.
    """
    serving = load_serving(settings)
    merged = FleetModel()
    labels = []
    for group in serving.groups:
        assert group.champion is not None
        fleet = registry.load_version(settings, group.name, group.champion)
        merged.components.update(fleet.components)
        merged.params = fleet.params
        labels.append(fleet.version)
    merged.version = ",".join(labels)
    return merged


def latest_telemetry_time(
    telemetry: TelemetryStore, components: Sequence[str]
) -> pd.Timestamp | None:
    """Return the newest telemetry timestamp over ``components``."""
    times = telemetry.last_timestamps(components).values()
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
    serving: ServingSet | None = None,
    shadow: bool = True,
) -> ScoreResult:
    """Score trained components up to ``until``, publish the scores, deliver hook actions.

    Each component's scores and the hook actions they cause are written in one
    transaction, so a crash cannot publish a score and lose its action. After every
    component is published, the due actions are delivered (not in a dry run).

    Parameters
    ----------
    settings : Settings
    until : pandas.Timestamp or None, default=None
        Last time to score; None scores up to the newest telemetry in the store.
    dry_run : bool, default=False
        Decide and record hook actions as ``dry_run`` and deliver nothing.
        ``[guardrails] dry_run = true`` in the settings has the same effect.
    fleet : FleetModel or None, default=None
        Score with this model as the only champion instead of the registry's.
    telemetry, store : optional
        Already-open telemetry store and risk store; opened when None.
    components : sequence of str or None, default=None
        Score only these components (one shard of the fleet); None scores every
        trained component. Each component is scored the same way whichever shard it
        is in.
    serving : ServingSet or None, default=None
        Already-read registry aliases (see :func:`predictor.lifecycle.serving.load_serving`),
        so a replay loads each model once.
    shadow : bool, default=True
        Also score with each group's challenger, when it is not the champion, into
        ``shadow_scores``. Shadow scores never call hooks.

    Each call is recorded in the store's ``scoring_runs`` table, failed or not, for the
    API's run metrics.

    Returns
    -------
    ScoreResult
        Counts, the components whose scoring failed with the error, so one bad
        component does not stop the others from publishing, and the components that
        were scored by a fallback model with the model used.
    """
    store = store or open_risk_store(settings)
    started = pd.Timestamp.now(tz="UTC")
    try:
        result = _score_cycle(
            settings,
            until,
            dry_run=dry_run,
            fleet=fleet,
            telemetry=telemetry,
            store=store,
            components=components,
            serving=serving,
            shadow=shadow,
        )
    except Exception as error:
        # The run is recorded as failed for the API's metrics, then the error goes on.
        record_scoring_run(
            store.engine,
            started_at=started,
            finished_at=pd.Timestamp.now(tz="UTC"),
            error=f"{type(error).__name__}: {error}",
        )
        raise
    record_scoring_run(
        store.engine,
        started_at=started,
        finished_at=pd.Timestamp.now(tz="UTC"),
        until=result.until,
        components_scored=result.components_scored,
        scores_written=result.scores_written,
        failures=result.failed_components,
    )
    return result


def _score_cycle(
    settings: Settings,
    until: pd.Timestamp | None = None,
    *,
    dry_run: bool = False,
    fleet: FleetModel | None = None,
    telemetry: TelemetryStore | None = None,
    store: RiskStore | None = None,
    components: Sequence[str] | None = None,
    serving: ServingSet | None = None,
    shadow: bool = True,
) -> ScoreResult:
    """Score, publish and queue hook actions once; :func:`score` records the run."""
    dry_run = dry_run or settings.guardrails.dry_run
    if serving is None:
        serving = ServingSet.from_fleet(settings, fleet) if fleet else load_serving(settings)
    telemetry = telemetry or open_telemetry(settings)
    store = store or open_risk_store(settings)
    components = _select_components(serving.resolve_components(telemetry), components)
    until = until if until is not None else latest_telemetry_time(telemetry, components)
    result = ScoreResult(until=until)
    if until is None:
        logger.warning("score: no telemetry for any trained component; nothing scored")
        return result

    calibration = active_calibration(settings)
    started = time.perf_counter()
    hook_groups = {declared.name: declared.group for declared in settings.components}
    components = _score_shared(
        settings,
        serving,
        components,
        telemetry,
        store,
        until,
        calibration,
        result,
        dry_run=dry_run,
        shadow=shadow,
        hook_groups=hook_groups,
    )
    for component in components:
        last_score = store.last_score(component)
        scored, used = _score_with_fallback(
            settings, serving, component, telemetry, last_score, until, calibration
        )
        if scored is None:
            result.failed_components[component] = used.error or "no model could score"
            continue
        if used.role != ROLE_CHAMPION:
            result.fallbacks[component] = used.label
        if shadow:
            result.shadow_scores_written += _shadow_score(
                settings, serving, component, telemetry, store, until, calibration
            )
        if scored.records.empty:
            continue
        records = scored.records.assign(model_role=used.role)
        written, queued = _publish(settings, store, records, scored.events, dry_run, hook_groups)
        result.scores_written += written
        result.hook_calls += queued
        result.components_scored += 1

    # Alertmanager hooks follow the stored levels on every run, not only on a change.
    sync_alertmanager_hooks(settings.hooks, store, dry_run=dry_run)
    if settings.hooks and not dry_run:
        delivery = deliver_hooks(settings, store=store)
        result.hooks_delivered = delivery.delivered
        result.hooks_dead = delivery.dead

    logger.info(
        "score: %d components, %d scores written, %d hook actions queued, %d delivered, "
        "%d dead, %d failed, %d on a fallback model, %d shadow scores, up to %s in %.1f s",
        result.components_scored,
        result.scores_written,
        result.hook_calls,
        result.hooks_delivered,
        result.hooks_dead,
        len(result.failed_components),
        len(result.fallbacks),
        result.shadow_scores_written,
        until,
        time.perf_counter() - started,
    )
    return result


def _publish(
    settings: Settings,
    store: RiskStore,
    records: pd.DataFrame,
    events: Sequence[HookEvent],
    dry_run: bool,
    hook_groups: dict[str, str | None],
) -> tuple[int, int]:
    """Decide the hook actions of ``events`` and write them with ``records`` in one
    transaction; return the scores and actions written."""
    actions = []
    if events and settings.hooks:
        actions = decide_actions(
            events,
            settings.hooks,
            store,
            dry_run=dry_run,
            budgets=settings.budgets,
            groups=hook_groups,
        )
    return store.write_scores_and_actions(records, actions)


def _score_shared(
    settings: Settings,
    serving: ServingSet,
    components: Sequence[str],
    telemetry: TelemetryStore,
    store: RiskStore,
    until: pd.Timestamp,
    calibration: RiskCalibration | None,
    result: ScoreResult,
    *,
    dry_run: bool,
    shadow: bool,
    hook_groups: dict[str, str | None],
) -> list[str]:
    """Score the components whose champion shares its ensemble, many at a time.

    Writes their scores and hook actions and returns the components left for the
    per-component path: those without a shared champion, and those the batch leaves
    (first score, stale telemetry, a failure of the batch).
    """
    batches: dict[tuple[int, str], list[ComponentModel]] = {}
    rest: list[str] = []
    for component in components:
        candidates = serving.candidates(component)
        champion = candidates[0] if candidates else None
        if (
            champion is None
            or champion.role != ROLE_CHAMPION
            or champion.model is None
            or not champion.model.shares_ensemble
        ):
            rest.append(component)
            continue
        key = (id(champion.model.ensemble), champion.label)
        batches.setdefault(key, []).append(champion.model)

    for (_, label), models in batches.items():
        for start in range(0, len(models), BATCH_COMPONENTS):
            chunk = models[start : start + BATCH_COMPONENTS]
            names = [model.component for model in chunk]
            last_scores = store.last_scores(names)
            try:
                scored = score_shared_batch(
                    chunk, telemetry, last_scores, until, settings, label, calibration
                )
            except Exception:  # the per-component path, with its fallbacks, takes over
                logger.exception(
                    "score: batch of %d components of %s failed; scoring them one by one",
                    len(chunk),
                    label,
                )
                rest.extend(names)
                continue
            rest.extend(scored.rest)
            if scored.records.empty:
                continue
            records = scored.records.assign(model_role=ROLE_CHAMPION)
            written, queued = _publish(
                settings, store, records, scored.events, dry_run, hook_groups
            )
            result.scores_written += written
            result.hook_calls += queued
            result.components_scored += len(scored.components)
            if shadow:
                result.shadow_scores_written += _shadow_score_shared(
                    settings, serving, scored.components, telemetry, store, until, calibration
                )
    return sorted(rest)


def _shadow_score_shared(
    settings: Settings,
    serving: ServingSet,
    components: Sequence[str],
    telemetry: TelemetryStore,
    store: RiskStore,
    until: pd.Timestamp,
    calibration: RiskCalibration | None,
) -> int:
    """Score ``components`` with their challengers into ``shadow_scores``, many at a time."""
    batches: dict[tuple[int, str], list[ComponentModel]] = {}
    one_by_one: list[str] = []
    for component in components:
        challenger = serving.challenger(component)
        if challenger is None or challenger.model is None:
            continue
        if not challenger.model.shares_ensemble:
            one_by_one.append(component)
            continue
        key = (id(challenger.model.ensemble), challenger.label)
        batches.setdefault(key, []).append(challenger.model)

    written = 0
    for (_, label), models in batches.items():
        names = [model.component for model in models]
        try:
            scored = score_shared_batch(
                models,
                telemetry,
                store.last_scores(names, shadow=True),
                until,
                settings,
                label,
                calibration,
            )
        except Exception:  # a failing challenger must not stop the published scores
            logger.exception("score: challenger %s failed in shadow on a batch", label)
            continue
        one_by_one.extend(scored.rest)
        if not scored.records.empty:
            records = scored.records.assign(model_role=ROLE_CHALLENGER)
            written += store.write_scores(records, shadow=True)
    for component in one_by_one:
        written += _shadow_score(
            settings, serving, component, telemetry, store, until, calibration
        )
    return written


def deliver_hooks(
    settings: Settings,
    *,
    store: RiskStore | None = None,
    max_actions: int = 100,
    worker_id: str | None = None,
) -> DeliveryReport:
    """Send the due pending hook actions of the risk store (see :func:`deliver_pending`).

    ``predictor score``, ``predictor hooks deliver`` and the Airflow delivery task call
    this. Several workers may run it at once: each action is claimed by one of them.
    With ``[guardrails] dry_run`` set, nothing is sent and the pending actions wait.
    """
    if settings.guardrails.dry_run:
        logger.warning(
            "hooks: [guardrails] dry_run is set, so no pending hook action is sent; "
            "unset it to deliver"
        )
        return DeliveryReport()
    own = store is None
    store = store or open_risk_store(settings)
    try:
        return deliver_pending(
            store,
            settings.hooks,
            home=settings.home,
            max_actions=max_actions,
            worker_id=worker_id,
        )
    finally:
        if own:
            store.close()


def _score_with_fallback(
    settings: Settings,
    serving: ServingSet,
    component: str,
    telemetry: TelemetryStore,
    last_score: dict | None,
    until: pd.Timestamp,
    calibration: RiskCalibration | None,
) -> tuple[ComponentScores | None, Candidate]:
    """Score with the champion, else the previous champion, else the statistical detector.

    Returns the scores and the candidate that produced them, or None and the last
    candidate with its error when none could score.
    """
    failed: Candidate | None = None
    for candidate in [*serving.candidates(component), None]:
        if candidate is None:
            end = _fallback_end(settings, component, last_score)
            if end is None:
                break
            candidate = fit_statistical(settings, telemetry, component, end)
        if candidate.model is not None:
            try:
                scored = score_component(
                    candidate.model,
                    telemetry,
                    last_score,
                    until,
                    settings,
                    candidate.label,
                    calibration,
                )
            except Exception as error:  # any failure of a model moves on to the next one
                candidate.error = f"{type(error).__name__}: {error}"
            else:
                return scored, candidate
        logger.warning(
            "score: component %s: %s %s failed: %s; falling back",
            component,
            candidate.role,
            candidate.label,
            candidate.error,
        )
        failed = candidate
        if candidate.role == ROLE_STATISTICAL:
            break
    logger.error("score: component %s: no model could score it; other components go on", component)
    return None, failed or Candidate(ROLE_STATISTICAL, "none", error="no model to score with")


def _fallback_end(
    settings: Settings, component: str, last_score: dict | None
) -> pd.Timestamp | None:
    """Return where the statistical fallback's training ends: the last score, else the
    end of the component's recorded training window."""
    if last_score is not None:
        return pd.Timestamp(last_score["scored_at"])
    window = training_windows(settings).get(component)
    return window.end if window is not None else None


def _shadow_score(
    settings: Settings,
    serving: ServingSet,
    component: str,
    telemetry: TelemetryStore,
    store: RiskStore,
    until: pd.Timestamp,
    calibration: RiskCalibration | None,
) -> int:
    """Score ``component`` with its group's challenger into ``shadow_scores``; no hooks."""
    challenger = serving.challenger(component)
    if challenger is None or challenger.model is None:
        return 0
    try:
        scored = score_component(
            challenger.model,
            telemetry,
            store.last_score(component, shadow=True),
            until,
            settings,
            challenger.label,
            calibration,
        )
    except Exception:  # a failing challenger must not stop the published scores
        logger.exception(
            "score: component %s: challenger %s failed in shadow", component, challenger.label
        )
        return 0
    if scored.records.empty:
        return 0
    return store.write_scores(scored.records.assign(model_role=challenger.role), shadow=True)


def _select_components(served: Sequence[str], names: Sequence[str] | None) -> list[str]:
    if names is None:
        return sorted(served)
    unknown = sorted(set(names) - set(served))
    if unknown:
        raise ConfigError(
            f"component {unknown[0]!r} has no trained model; trained components: {len(served)}"
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
    serving = load_serving(settings)
    telemetry = open_telemetry(settings)
    store = open_risk_store(settings)
    fleet = load_champion(settings)
    if latest_telemetry_time(telemetry, sorted(fleet.components)) is None:
        raise PredictorUserError("no telemetry to replay; run `predictor ingest` first")
    cycle_ends = _replay_cycle_ends(fleet, telemetry, chunk)
    results = []
    for cycle_end in progress(cycle_ends, desc="replay", unit="cycle"):
        results.append(
            score(
                settings,
                cycle_end,
                dry_run=dry_run,
                telemetry=telemetry,
                store=store,
                serving=serving,
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
    last_times = telemetry.last_timestamps(fleet.components)
    for component, model in fleet.components.items():
        last = last_times[component]
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
