"""Alertmanager integration: the ``alertmanager`` hook and the Alertmanager webhook format.

An ``alertmanager`` hook keeps one alert per component whose latest level is in the
hook's ``on_levels``, posted to ``{url}/api/v2/alerts``. Every scoring run posts the
firing alerts again with ``endsAt`` = now + ``resolve_timeout_minutes``, so an alert
stays active while the level holds and expires by itself when the predictor stops
running. An alert of this hook that Alertmanager still lists as active but whose
component has left the level is posted once more with ``endsAt`` = now, which resolves
it. Alertmanager keeps the earliest ``startsAt`` of an alert it already holds, so the
re-posts do not move the start.

Labels: ``alertname`` (the hook's ``alertname``), ``component``, ``group`` (when the
component has one), ``level`` and ``predictor_hook`` (the hook's name, which tells the
alerts of two hooks apart). Annotations: ``summary``, ``risk``, ``drivers``,
``time_to_threshold_seconds`` (when a forecast predicts a crossing), ``scored_at`` and
``model_version``.

A webhook hook with ``format = "alertmanager"`` sends the body that Alertmanager's own
webhook receiver sends (version ``"4"``), so receivers built for Alertmanager work
unchanged.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from predictor.config import HookConfig
from predictor.hooks.payload import HookEvent
from predictor.store import RiskStore, dumps_json

logger = logging.getLogger(__name__)

#: Path of Alertmanager's API for posting and listing alerts.
ALERTS_PATH = "/api/v2/alerts"

#: Version of Alertmanager's webhook body that ``format = "alertmanager"`` sends.
WEBHOOK_VERSION = "4"

#: Drivers named in the ``drivers`` annotation; the payload keeps them all.
MAX_DRIVERS_IN_ANNOTATION = 5


@dataclass(frozen=True)
class AlertSync:
    """Outcome of one synchronisation of an ``alertmanager`` hook.

    Attributes
    ----------
    hook : str
        Name of the hook.
    firing : int
        Alerts posted as active (renewed or new).
    resolved : int
        Alerts posted with ``endsAt`` = now.
    ok : bool
        Whether Alertmanager accepted the post; True in a dry run.
    detail : str
        HTTP status or error, or ``"dry run: not sent"``.
    """

    hook: str
    firing: int
    resolved: int
    ok: bool
    detail: str


def _rfc3339(stamp: pd.Timestamp) -> str:
    return stamp.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _drivers_text(drivers: Any) -> str:
    if not isinstance(drivers, list | tuple):
        return ""
    parts = []
    for driver in list(drivers)[:MAX_DRIVERS_IN_ANNOTATION]:
        if not isinstance(driver, Mapping):
            continue
        metric = driver.get("metric", "?")
        contribution = driver.get("contribution")
        if isinstance(contribution, int | float):
            parts.append(f"{metric} ({contribution:.2f})")
        else:
            parts.append(str(metric))
    return ", ".join(parts)


def alert_labels(
    hook: HookConfig, component: str, group: str | None, level: str
) -> dict[str, str]:
    """Return the label set of the alert of ``component`` at ``level`` for ``hook``."""
    labels = {
        "alertname": hook.alertname,
        "component": component,
        "level": level,
        "predictor_hook": hook.name,
    }
    if group:
        labels["group"] = group
    return labels


def alert_annotations(payload: Mapping[str, Any]) -> dict[str, str]:
    """Return the annotations of an alert built from a predictor payload."""
    risk = payload.get("risk")
    level = payload.get("level")
    component = payload.get("component")
    annotations = {
        "summary": (
            f"{component} is at failure-risk level {level}"
            + ("" if risk is None else f" (risk {risk:.3f})")
        ),
        "risk": "" if risk is None else f"{risk:.4f}",
        "drivers": _drivers_text(payload.get("drivers")),
        "scored_at": str(payload.get("scored_at") or ""),
        "model_version": str(payload.get("model_version") or ""),
    }
    seconds = payload.get("time_to_threshold_seconds")
    if seconds is not None:
        annotations["time_to_threshold_seconds"] = f"{seconds:.0f}"
    # Alertmanager drops empty annotation values anyway; leaving them out keeps it explicit.
    return {name: value for name, value in annotations.items() if value != ""}


def alertmanager_webhook_payload(hook: HookConfig, event: HookEvent) -> dict[str, Any]:
    """Return ``event`` in the body that Alertmanager's webhook receiver sends.

    The body holds one firing alert (a ``fail_back`` event is sent as a resolved one)
    whose labels and annotations are those of :func:`alert_labels` and
    :func:`alert_annotations`, plus an ``event`` label and an ``idempotency_key``
    annotation, so a receiver can drop repeats.
    """
    payload = event.to_payload()
    resolved = event.event == "fail_back"
    labels = {
        **alert_labels(hook, event.component, event.group, event.level),
        "event": event.event,
    }
    annotations = {
        **alert_annotations(payload),
        "idempotency_key": event.idempotency_key,
    }
    starts = _rfc3339(event.scored_at)
    alert = {
        "status": "resolved" if resolved else "firing",
        "labels": labels,
        "annotations": annotations,
        "startsAt": starts,
        "endsAt": starts if resolved else "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": "",
    }
    group_labels = {"alertname": hook.alertname}
    return {
        "version": WEBHOOK_VERSION,
        "groupKey": "{}:" + "{" + f'alertname="{hook.alertname}"' + "}",
        "truncatedAlerts": 0,
        "status": alert["status"],
        "receiver": hook.name,
        "groupLabels": group_labels,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "",
        "alerts": [alert],
    }


def hook_payload(hook: HookConfig, event: HookEvent) -> dict[str, Any]:
    """Return the body a hook sends for ``event``: the predictor payload, or Alertmanager's."""
    if hook.format == "alertmanager":
        return alertmanager_webhook_payload(hook, event)
    return event.to_payload()


def _alerts_url(hook: HookConfig, query: Sequence[tuple[str, str]] = ()) -> str:
    base = (hook.url or "").rstrip("/")
    url = base + ALERTS_PATH
    return f"{url}?{urllib.parse.urlencode(list(query))}" if query else url


def _request(hook: HookConfig, url: str, body: bytes | None = None) -> Any:
    headers = {"Accept": "application/json", **dict(hook.headers)}
    if body is not None:
        headers["Content-Type"] = "application/json"
    method = "POST" if body is not None else "GET"
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    with urllib.request.urlopen(request, timeout=hook.timeout_seconds) as response:
        text = response.read().decode("utf-8")
    return json.loads(text) if text.strip() else None


def active_alerts(hook: HookConfig) -> list[dict[str, Any]]:
    """Return the alerts of ``hook`` that Alertmanager lists as active (firing, silenced
    or inhibited).

    Raises
    ------
    urllib.error.URLError, OSError, ValueError
        If Alertmanager cannot be reached or returns something other than JSON.
    """
    query = [
        ("active", "true"),
        ("silenced", "true"),
        ("inhibited", "true"),
        ("unprocessed", "true"),
        ("filter", f'alertname="{hook.alertname}"'),
        ("filter", f'predictor_hook="{hook.name}"'),
    ]
    alerts = _request(hook, _alerts_url(hook, query))
    return list(alerts or [])


def build_alerts(
    hook: HookConfig, latest: pd.DataFrame, active: Sequence[Mapping[str, Any]], now: pd.Timestamp
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return the firing and the resolving alerts for the latest score of each component.

    Parameters
    ----------
    hook : HookConfig
        The ``alertmanager`` hook.
    latest : pandas.DataFrame
        Latest score per component, as :meth:`RiskStore.latest_scores` returns it.
    active : sequence of mapping
        Alerts of this hook that Alertmanager lists as active.
    now : pandas.Timestamp
        Wall-clock time of the post.

    Returns
    -------
    firing, resolving : list of dict
        Alerts in the ``/api/v2/alerts`` post format.
    """
    ends = _rfc3339(now + pd.Timedelta(minutes=hook.resolve_timeout_minutes))
    firing = []
    keep = set()
    for row in latest.to_dict("records"):
        level = str(row["level"])
        if level not in hook.on_levels:
            continue
        group = row.get("group_name")
        group = None if group is None or pd.isna(group) else str(group)
        labels = alert_labels(hook, str(row["component"]), group, level)
        keep.add(tuple(sorted(labels.items())))
        payload = {
            "component": row["component"],
            "level": level,
            "risk": None if pd.isna(row["risk"]) else float(row["risk"]),
            "drivers": row.get("drivers"),
            "time_to_threshold_seconds": (
                None
                if pd.isna(row.get("time_to_threshold_seconds"))
                else float(row["time_to_threshold_seconds"])
            ),
            "scored_at": pd.Timestamp(row["scored_at"]).isoformat(),
            "model_version": row.get("model_version"),
        }
        firing.append(
            {
                "labels": labels,
                "annotations": alert_annotations(payload),
                "startsAt": _rfc3339(now),
                "endsAt": ends,
            }
        )

    resolving = []
    for alert in active:
        labels = dict(alert.get("labels") or {})
        if tuple(sorted(labels.items())) in keep:
            continue
        resolving.append(
            {
                "labels": labels,
                "annotations": dict(alert.get("annotations") or {}),
                "startsAt": alert.get("startsAt") or _rfc3339(now),
                "endsAt": _rfc3339(now),
            }
        )
    return firing, resolving


def sync_alerts(
    hook: HookConfig, store: RiskStore, *, now: pd.Timestamp | None = None, dry_run: bool = False
) -> AlertSync:
    """Post the alerts of one ``alertmanager`` hook for the latest levels in ``store``.

    Never raises for an Alertmanager that is down or rejects the post: the outcome is
    logged and returned, so scoring goes on. The firing alerts then expire on their own
    after ``resolve_timeout_minutes``.
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    latest = store.latest_scores()
    dry_run = dry_run or hook.dry_run
    try:
        active = [] if dry_run else active_alerts(hook)
    except (urllib.error.URLError, OSError, ValueError) as error:
        # Without the active list nothing can be resolved; firing alerts are still renewed.
        logger.warning(
            "hook %s: listing active alerts at %s failed: %s; resolving nothing this run",
            hook.name,
            hook.url,
            error,
        )
        active = []
    firing, resolving = build_alerts(hook, latest, active, now)
    if dry_run:
        logger.info(
            "hook %s: dry run: would post %d firing and %d resolved alerts to %s",
            hook.name,
            len(firing),
            len(resolving),
            hook.url,
        )
        return AlertSync(hook.name, len(firing), len(resolving), True, "dry run: not sent")
    if not firing and not resolving:
        return AlertSync(hook.name, 0, 0, True, "nothing to post")

    body = dumps_json([*firing, *resolving]).encode("utf-8")
    try:
        _request(hook, _alerts_url(hook), body)
    except urllib.error.HTTPError as error:
        detail = f"HTTP {error.code} {error.reason}"
        error.close()
    except (urllib.error.URLError, OSError, ValueError) as error:
        detail = f"request failed: {error}"
    else:
        logger.info(
            "hook %s: posted %d firing and %d resolved alerts to %s",
            hook.name,
            len(firing),
            len(resolving),
            hook.url,
        )
        return AlertSync(hook.name, len(firing), len(resolving), True, "HTTP 200")
    logger.warning(
        "hook %s: posting %d firing and %d resolved alerts to %s failed: %s",
        hook.name,
        len(firing),
        len(resolving),
        hook.url,
        detail,
    )
    return AlertSync(hook.name, len(firing), len(resolving), False, detail)


def sync_alertmanager_hooks(
    hooks: Sequence[HookConfig],
    store: RiskStore,
    *,
    now: pd.Timestamp | None = None,
    dry_run: bool = False,
) -> list[AlertSync]:
    """Run :func:`sync_alerts` for every ``alertmanager`` hook in ``hooks``."""
    return [
        sync_alerts(hook, store, now=now, dry_run=dry_run)
        for hook in hooks
        if hook.type == "alertmanager"
    ]
