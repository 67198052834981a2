"""Task bodies of the Airflow DAGs: plain arguments in, small JSON-able dicts out.

Each function loads the settings itself (``predictor.toml`` and ``PREDICTOR_*``, as the
command line does), calls one stage of :mod:`predictor.pipeline` and returns counts, ids
and component names, never frames, so Airflow's XCom carries only references.

Training is split into groups of components, one per registered model. Each group has
its own version and quality gate, so :func:`plan_training` lists the groups and
:func:`train_group` trains one of them on any worker.

Scoring is split into shards of components. :func:`plan_scoring` fixes the scoring time
``until`` once per run, and every shard scores up to that time. A component's scores
depend only on its own telemetry up to ``until``, so the stored scores are the same for
any shard size or worker count. Without a fixed ``until``, :func:`pipeline.score` scores
each call up to the newest telemetry of the components it is given, which differs per
shard.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from predictor import pipeline
from predictor.config import Settings, load_settings
from predictor.exceptions import ConfigError, PredictorUserError

logger = logging.getLogger(__name__)

#: Components per scoring shard when the run does not set ``shard_size``.
DEFAULT_SHARD_SIZE = 50

#: MLflow run tag that records which scheduled run trained a model, so a re-run of the
#: same run reuses that model instead of registering another version.
RUN_KEY_TAG = "predictor.airflow_run_key"


def load_run_settings(config_path: str | None = None) -> Settings:
    """Load the settings for one task, optionally from a per-run configuration file.

    Parameters
    ----------
    config_path : str or None, default=None
        The TOML file set by the run's ``config_path`` param. None or an empty string
        reads ``PREDICTOR_CONFIG``, then ``./predictor.toml``, as the command line does.
    """
    return load_settings(config_path or None)


def parse_time(value: str | None, name: str) -> pd.Timestamp | None:
    """Parse an ISO 8601 time with a UTC offset, as a UTC timestamp.

    Raises
    ------
    ConfigError
        If the text is not a time, or has no UTC offset.
    """
    if value is None or value == "":
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        raise ConfigError(
            f"{name}: expected an ISO 8601 time such as '2024-01-17T12:00:00+00:00', got {value!r}"
        ) from None
    if stamp.tzinfo is None:
        raise ConfigError(f"{name}: expected a time with a UTC offset, got {value!r}")
    return stamp.tz_convert("UTC")


def _iso(stamp: pd.Timestamp | None) -> str | None:
    return None if stamp is None else stamp.isoformat()


def ingest_sources(
    config_path: str | None = None, sources: Sequence[str] | None = None
) -> dict[str, Any]:
    """Ingest the configured sources (or those named) into the telemetry store.

    Ingest skips rows already stored, so running it again on the same files adds no
    telemetry rows.

    Returns
    -------
    dict
        ``sources``, ``rows_read``, ``rows_written``, ``duplicates``, ``quarantined``
        (row counts summed over the sources), ``components`` (names with rows in the
        ingested files) and ``telemetry_dir``.
    """
    settings = load_run_settings(config_path)
    selected = pipeline.select_sources(settings, sources)
    summaries = pipeline.ingest(settings, selected)
    components = sorted({name for summary in summaries for name in summary.components})
    result = {
        "sources": len(summaries),
        "rows_read": sum(summary.rows_read for summary in summaries),
        "rows_written": sum(summary.written for summary in summaries),
        "duplicates": sum(summary.duplicates for summary in summaries),
        "quarantined": sum(summary.quarantined for summary in summaries),
        "components": components,
        "telemetry_dir": str(settings.telemetry_dir),
    }
    logger.info(
        "ingest: %d sources, %d rows read, %d written, %d duplicates, %d quarantined",
        result["sources"],
        result["rows_read"],
        result["rows_written"],
        result["duplicates"],
        result["quarantined"],
    )
    return result


def compact_telemetry(config_path: str | None = None) -> dict[str, Any]:
    """Merge the telemetry files of each completed UTC day, and of each completed hour
    of the current day, into one file each.

    Files already merged are left alone, so running it again changes nothing.

    Returns
    -------
    dict
        ``merged`` (``YYYY-MM-DD`` for whole days, ``YYYY-MM-DD HH:MM`` for hours),
        ``files_merged`` and ``rows`` (summed over them).
    """
    settings = load_run_settings(config_path)
    compacted = pipeline.open_telemetry(settings).compact()
    result = {
        "merged": [day.date if day.hour is None else f"{day.date} {day.hour}"
                   for day in compacted],
        "files_merged": sum(day.files for day in compacted),
        "rows": sum(day.rows for day in compacted),
    }
    logger.info("compact: %d merges, %d files merged, %d rows", len(compacted),
                result["files_merged"], result["rows"])
    return result


def training_run_key(
    dag_id: str,
    interval: str,
    config_path: str | None,
    until: str | None,
    lookback_days: float | None,
) -> str:
    """Return the key that identifies one scheduled training run and its params.

    Parameters
    ----------
    dag_id : str
    interval : str
        The run's data interval end, or its run id when it has no data interval.
    config_path, until, lookback_days : optional
        The run's params. A run with other params trains again.
    """
    return "|".join([dag_id, interval, str(config_path), str(until), str(lookback_days)])


def plan_training(config_path: str | None = None) -> list[dict[str, Any]]:
    """Split the components with telemetry into training groups, one per registered model.

    A group is one registered model with its own version, aliases and quality gate, so
    groups train independently of each other and one worker trains one group.

    Returns
    -------
    list of dict
        One ``{"index": i, "group": name, "components": [...]}`` per registered model,
        in the order of :func:`registry.component_groups`.

    Raises
    ------
    PredictorUserError
        If the telemetry store has no component.
    """
    from predictor.lifecycle import registry

    settings = load_run_settings(config_path)
    telemetry = pipeline.open_telemetry(settings)
    components = telemetry.components()
    if not components:
        raise PredictorUserError(f"no telemetry in {telemetry.root}; run `predictor ingest` first")
    groups = registry.component_groups(settings, components)
    logger.info(
        "plan: %d components in %d training groups (%s)",
        len(components),
        len(groups),
        ", ".join(f"{name}: {len(members)}" for name, members in groups.items()),
    )
    return [
        {"index": i, "group": name, "components": members}
        for i, (name, members) in enumerate(groups.items())
    ]


def train_group(
    group: str,
    components: Sequence[str],
    *,
    config_path: str | None = None,
    until: str | None = None,
    lookback_days: float | None = None,
    run_key: str | None = None,
    index: int | None = None,
) -> dict[str, Any]:
    """Train one group's components, register the version and run its quality gate.

    Parameters
    ----------
    group : str
        The registered model name, from :func:`plan_training`.
    components : sequence of str
        The group's components, from :func:`plan_training`.
    config_path : str or None, default=None
    until : str or None, default=None
        ISO 8601 time; every component trains on rows before it. None uses the training
        cuts recorded at ingest from the sources' roles, as ``predictor train`` does.
    lookback_days : float or None, default=None
        Train only on the last this many days before the cut.
    run_key : str or None, default=None
        Identifies the scheduled run, see :func:`training_run_key`. When an MLflow run
        with this key already registered a version of ``group``, that version is reused
        and nothing is trained, so re-running the same scheduled run registers no second
        version. Other groups of the run do not count.
    index : int or None, default=None
        The group's position in the plan, returned for the run summary.

    Returns
    -------
    dict
        ``index``, ``group``, ``components``, ``run_id``, ``model_version``
        (``"<name>/<version>"``), the quality gate's ``decision`` and ``reused``.
        ``run_id`` and ``model_version`` are None and ``decision`` is
        ``"no training data"`` when no component had rows in its training window.
    """
    settings = load_run_settings(config_path)
    result: dict[str, Any] = {"index": index, "group": group, "components": sorted(components)}
    if run_key:
        earlier = [run for run in _runs_with_key(settings, run_key) if run["name"] == group]
        if earlier:
            newest = earlier[-1]
            logger.info(
                "train: scheduled run %s already registered %s for group %s; not training again",
                run_key,
                newest["model_version"],
                group,
            )
            return {**result, **_run_fields(newest), "reused": True}

    outcome = pipeline.train_group_model(
        settings, group, components, parse_time(until, "until"), lookback_days
    )
    if outcome is None:
        logger.warning(
            "train: group %s has no rows in the training window of any of its %d components; "
            "no version registered",
            group,
            len(result["components"]),
        )
        return {
            **result,
            "run_id": None,
            "model_version": None,
            "decision": "no training data",
            "reused": False,
        }
    if run_key:
        _tag_run(settings, outcome.run_id, run_key)
    fields = {
        "run_id": outcome.run_id,
        "model_version": outcome.label,
        "decision": outcome.decision,
    }
    return {**result, **fields, "reused": False}


def _run_fields(run: Mapping[str, Any]) -> dict[str, Any]:
    return {key: run[key] for key in ("run_id", "model_version", "decision")}


def summarize_training(
    groups: Sequence[Mapping[str, Any]], results: Iterable[Mapping[str, Any] | None]
) -> dict[str, Any]:
    """Add up the group results of a training run and list the groups that failed.

    Parameters
    ----------
    groups : sequence of mapping
        The groups of the run, as :func:`plan_training` returns them.
    results : iterable of mapping or None
        The outputs of the groups that returned one. A group that raised has none, so
        every planned group without a result counts as failed.

    Returns
    -------
    dict
        ``groups`` (count), ``failed_groups`` (a list of ``{"index", "group",
        "components"}``), ``registered`` (the ``"<name>/<version>"`` of every group
        that has a version from this run, reused ones included), ``promoted``,
        ``rejected``, ``reused`` (counts) and ``without_data`` (group names whose
        components had no rows in their training window).
    """
    by_index = {
        result["index"]: result for result in results if result is not None and "index" in result
    }
    failed = [
        {"index": group["index"], "group": group["group"], "components": group["components"]}
        for group in groups
        if group["index"] not in by_index
    ]
    finished = [by_index[group["index"]] for group in groups if group["index"] in by_index]
    summary = {
        "groups": len(groups),
        "failed_groups": failed,
        "registered": [result["model_version"] for result in finished if result["model_version"]],
        "promoted": sum(result["decision"] == "promoted" for result in finished),
        "rejected": sum(result["decision"] == "rejected" for result in finished),
        "reused": sum(bool(result["reused"]) for result in finished),
        "without_data": [result["group"] for result in finished if not result["model_version"]],
    }
    log = logger.warning if failed else logger.info
    log(
        "training run: %d of %d groups failed (%s); %d registered (%d promoted, %d rejected, "
        "%d reused), %d without training data",
        len(failed),
        summary["groups"],
        ", ".join(group["group"] for group in failed) or "none",
        len(summary["registered"]),
        summary["promoted"],
        summary["rejected"],
        summary["reused"],
        len(summary["without_data"]),
    )
    return summary


def _runs_with_key(settings: Settings, run_key: str) -> list[dict[str, Any]]:
    """Return the finished MLflow training runs tagged with ``run_key``, oldest first."""
    import mlflow

    from predictor.tracking import configure_mlflow

    experiment_id = configure_mlflow(settings)
    client = mlflow.MlflowClient()
    # Single quotes inside the key would end the filter string, so they are escaped.
    escaped = run_key.replace("'", "\\'")
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_KEY_TAG}` = '{escaped}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time ASC"],
    )
    runs = []
    for run in found:
        versions = client.search_model_versions(f"run_id = '{run.info.run_id}'")
        version = versions[0] if versions else None
        runs.append(
            {
                "name": version.name if version else None,
                "run_id": run.info.run_id,
                "model_version": f"{version.name}/{version.version}" if version else None,
                "decision": run.data.tags.get("predictor.gate"),
                "components": int(run.data.tags.get("predictor.components", "0")),
            }
        )
    return runs


def _tag_run(settings: Settings, run_id: str, run_key: str) -> None:
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.MlflowClient().set_tag(run_id, RUN_KEY_TAG, run_key)


def trained_components(settings: Settings) -> list[str]:
    """Return the sorted names of the components the champion model covers."""
    return sorted(pipeline.load_champion(settings).components)


def split_shards(components: Iterable[str], shard_size: int) -> list[list[str]]:
    """Split component names into consecutive shards of at most ``shard_size``.

    Names are sorted and deduplicated first, so the shards depend only on the names and
    the size, never on the input order or the number of workers.

    Raises
    ------
    ConfigError
        If ``shard_size`` is not a positive integer.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ConfigError(f"shard_size: expected a positive integer, got {shard_size!r}")
    names = sorted(set(components))
    return [names[start : start + shard_size] for start in range(0, len(names), shard_size)]


def split_group_shards(
    groups: dict[str, list[str]], shard_size: int
) -> list[list[str]]:
    """Split each group's components into shards of at most ``shard_size``.

    A shard never mixes groups, so a scoring task loads one group's model. Groups come
    in name order and each is split as :func:`split_shards` splits names.
    """
    return [
        shard
        for name in sorted(groups)
        for shard in split_shards(groups[name], shard_size)
    ]


def plan_shards(settings: Settings, shard_size: int = DEFAULT_SHARD_SIZE) -> list[list[str]]:
    """Split the champion's components into shards of at most ``shard_size``, by group.

    NOTE: with shared group ensembles (``[model] sharing = "group"``) every shard still
    loads its whole group's model file (about 4 s at 10,000 components), so such fleets
    want few large shards.
    """
    from predictor.lifecycle import registry

    components = trained_components(settings)
    return split_group_shards(registry.component_groups(settings, components), shard_size)


def newest_telemetry_time(settings: Settings, components: Sequence[str]) -> pd.Timestamp | None:
    """Return the newest telemetry time over ``components``, skipping unreadable ones.

    A component whose stored telemetry cannot be read is logged and left out, so it
    fails in its own shard instead of failing the plan of the whole run.
    """
    telemetry = pipeline.open_telemetry(settings)
    try:
        known = [t for t in telemetry.last_timestamps(components).values() if t is not None]
    except (OSError, ValueError):
        # Some component cannot be read; find it one component at a time below.
        pass
    else:
        return max(known) if known else None

    newest = None
    for component in components:
        try:
            last = telemetry.last_timestamp(component)
        except (OSError, ValueError) as error:
            logger.warning(
                "plan: newest telemetry of component %s could not be read (%s); "
                "it is left out of the scoring time",
                component,
                error,
            )
            continue
        if last is not None and (newest is None or last > newest):
            newest = last
    return newest


def plan_scoring(
    config_path: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    until: str | None = None,
    cutoff: str | None = None,
) -> list[dict[str, Any]]:
    """Fix the scoring time of a run and split the trained components into shards.

    Parameters
    ----------
    config_path : str or None, default=None
    shard_size : int, default=DEFAULT_SHARD_SIZE
    until : str or None, default=None
        ISO 8601 time to score up to, set by the run's ``until`` param. It wins over
        the default below.
    cutoff : str or None, default=None
        ISO 8601 time the run stands for: its data interval end, or for an
        asset-triggered run the time it was created. Without ``until``, scoring runs up
        to the newest telemetry of the trained components, but not past ``cutoff``.

    Returns
    -------
    list of dict
        One ``{"index": i, "components": [...], "until": iso_time}`` per shard, all
        with the same ``until``. Empty when no trained component has telemetry.
    """
    from predictor.lifecycle import registry

    settings = load_run_settings(config_path)
    components = trained_components(settings)
    shards = split_group_shards(registry.component_groups(settings, components), shard_size)
    fixed = parse_time(until, "until")
    if fixed is None:
        fixed = newest_telemetry_time(settings, components)
        limit = parse_time(cutoff, "cutoff")
        if fixed is not None and limit is not None and fixed > limit:
            fixed = limit
    if fixed is None:
        logger.warning("plan: no telemetry for any of %d trained components", len(components))
        return []
    logger.info(
        "plan: %d components in %d shards of at most %d, scoring up to %s",
        len(components),
        len(shards),
        shard_size,
        fixed,
    )
    return [
        {"index": i, "components": shard, "until": _iso(fixed)} for i, shard in enumerate(shards)
    ]


def score_shard(
    components: Sequence[str],
    until: str,
    *,
    config_path: str | None = None,
    dry_run: bool = False,
    index: int | None = None,
) -> dict[str, Any]:
    """Score one shard of components up to the run's fixed ``until`` and publish.

    Scores already stored for a (component, time) are skipped and hook calls already
    recorded are not made again, so re-running a shard adds nothing.

    Returns
    -------
    dict
        ``index``, ``components``, ``until``, ``scores_written``, ``components_scored``,
        ``hook_calls`` and ``failed_components`` (name to error message). Components
        that failed did not stop the others in the shard from publishing.
    """
    settings = load_run_settings(config_path)
    fixed = parse_time(until, "until")
    if fixed is None:
        raise ConfigError("until: every shard needs the run's scoring time, got None")
    result = pipeline.score(settings, fixed, dry_run=dry_run, components=list(components))
    return {
        "index": index,
        "components": sorted(components),
        "until": _iso(fixed),
        "scores_written": result.scores_written,
        "components_scored": result.components_scored,
        "hook_calls": result.hook_calls,
        "failed_components": dict(sorted(result.failed_components.items())),
    }


def deliver_hooks(
    *, config_path: str | None = None, max_actions: int = 100, worker_id: str | None = None
) -> dict[str, Any]:
    """Send the due pending hook actions; callable from an Airflow task.

    Every scoring shard already delivers after it publishes; this task sends what is
    still due (retries after a backoff, actions whose worker was killed). Tasks running
    at once on several Airflow workers claim different actions, never the same one.

    Returns
    -------
    dict
        ``claimed``, ``delivered``, ``retried``, ``dead`` and ``deferred`` (held back by
        an open circuit breaker).
    """
    settings = load_run_settings(config_path)
    report = pipeline.deliver_hooks(settings, max_actions=max_actions, worker_id=worker_id)
    return {
        "claimed": len(report.ids),
        "delivered": report.delivered,
        "retried": report.retried,
        "dead": report.dead,
        "deferred": report.deferred,
    }


def summarize_scoring(
    shards: Sequence[Mapping[str, Any]], results: Iterable[Mapping[str, Any] | None]
) -> dict[str, Any]:
    """Add up the shard results of a run and list the shards that did not succeed.

    Parameters
    ----------
    shards : sequence of mapping
        The shards of the run, as :func:`plan_scoring` returns them.
    results : iterable of mapping or None
        The outputs of the shards that returned one. A shard that raised has none, so
        every planned shard without a result counts as failed, and so does a shard
        whose result lists failed components.

    Returns
    -------
    dict
        ``shards``, ``failed_shards`` (a list of ``{"index", "components", "errors"}``,
        where ``errors`` maps component to message when the shard reported them),
        ``scores_written``, ``components_scored`` and ``hook_calls``.
    """
    by_index = {
        result["index"]: result for result in results if result is not None and "index" in result
    }
    failed = []
    for shard in shards:
        result = by_index.get(shard["index"])
        if result is None:
            failed.append(
                {"index": shard["index"], "components": shard["components"], "errors": {}}
            )
        elif result["failed_components"]:
            failed.append(
                {
                    "index": shard["index"],
                    "components": shard["components"],
                    "errors": result["failed_components"],
                }
            )
    summary = {
        "shards": len(shards),
        "failed_shards": failed,
        "scores_written": sum(result["scores_written"] for result in by_index.values()),
        "components_scored": sum(result["components_scored"] for result in by_index.values()),
        "hook_calls": sum(result["hook_calls"] for result in by_index.values()),
    }
    log = logger.warning if failed else logger.info
    log(
        "scoring run: %d of %d shards failed (%s); %d scores written for %d components, "
        "%d hook calls",
        len(failed),
        summary["shards"],
        ", ".join(str(shard["index"]) for shard in failed) or "none",
        summary["scores_written"],
        summary["components_scored"],
        summary["hook_calls"],
    )
    return summary
