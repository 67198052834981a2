"""Deliver level entries to the configured hooks and record every call in the risk store."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from predictor.config import BudgetConfig, HookConfig
from predictor.hooks.alertmanager import hook_payload
from predictor.hooks.guardrails import DRY_RUN_KEY_PREFIX, guarded_calls, record_held
from predictor.hooks.payload import HookEvent
from predictor.hooks.senders import SendResult, run_command, send_webhook
from predictor.store import HookCallRecord, RiskStore

logger = logging.getLogger(__name__)


def _send(hook: HookConfig, payload: dict[str, object], home: Path) -> SendResult:
    if hook.type == "webhook":
        return send_webhook(hook, payload)
    if hook.type == "command":
        return run_command(hook, payload, {"PREDICTOR_HOME": str(home)}, home=home)
    raise ValueError(
        f"hook {hook.name!r}: expected type 'webhook' or 'command', got {hook.type!r}"
    )


def _in_cooldown(
    hook: HookConfig, event: HookEvent, store: RiskStore, *, dry_run: bool
) -> pd.Timestamp | None:
    """Return the scoring time of the delivery that puts ``event`` in cooldown, or None."""
    if hook.cooldown_minutes <= 0:
        return None
    # A dry run counts its own would-be deliveries, so it predicts what a real run skips.
    statuses = ("delivered", "dry_run") if dry_run else ("delivered",)
    last = store.last_delivered_call(
        hook.name, event.component, at_or_before=event.scored_at, statuses=statuses
    )
    if last is None:
        return None
    if event.scored_at - last < pd.Timedelta(minutes=hook.cooldown_minutes):
        return last
    return None


def _dispatch_one(
    event: HookEvent, hook: HookConfig, store: RiskStore, *, home: Path, dry_run: bool
) -> HookCallRecord | None:
    """Call one hook for one event and record the outcome.

    Returns None when the call was already recorded, without calling the hook.
    """
    key = event.idempotency_key
    stored_key = DRY_RUN_KEY_PREFIX + key if dry_run else key
    recorded = store.has_hook_call(hook.name, key)
    if dry_run and not recorded:
        recorded = store.has_hook_call(hook.name, stored_key)
    if recorded:
        logger.debug("hook %s: %s already recorded, not called again", hook.name, key)
        return None

    payload = hook_payload(hook, event)
    last = _in_cooldown(hook, event, store, dry_run=dry_run)
    if last is not None:
        status = "skipped_cooldown"
        detail = (
            f"last delivery scored at {last.isoformat()}, within the "
            f"{hook.cooldown_minutes:g} min cooldown"
        )
    elif dry_run:
        status, detail = "dry_run", "dry run: not sent"
    else:
        result = _send(hook, payload, home)
        status = "delivered" if result.ok else "failed"
        detail = result.detail

    record = HookCallRecord(
        hook=hook.name,
        component=event.component,
        level=event.level,
        previous_level=event.previous_level,
        scored_at=event.scored_at,
        called_at=pd.Timestamp.now(tz="UTC"),
        status=status,
        attempt_detail=detail,
        payload=payload,
        idempotency_key=stored_key,
    )
    if not store.record_hook_call(record):
        # Another process recorded the same call between the check above and this insert.
        logger.warning(
            "hook %s: %s was recorded by another run at the same time; outcome %s not stored",
            hook.name, key, status,
        )
        return None

    log = logger.warning if status == "failed" else logger.info
    log(
        "hook %s: %s of component %s to %s at %s: %s (%s)",
        hook.name, event.event, event.component, event.level, event.scored_at.isoformat(),
        status, detail,
    )
    return record


def dispatch_hooks(
    events: Sequence[HookEvent],
    hooks: Sequence[HookConfig],
    store: RiskStore,
    *,
    home: Path,
    dry_run: bool = False,
    budgets: Sequence[BudgetConfig] = (),
) -> list[HookCallRecord]:
    """Call every matching hook for every level change and record each call in ``store``.

    Parameters
    ----------
    events : sequence of HookEvent
        Level changes. Events whose ``previous_level`` equals ``level`` are ignored.
        They are handled in scoring-time order, whatever the input order.
    hooks : sequence of HookConfig
        Configured hooks. A ``failover`` hook fires for an entry into a level in its
        ``on_levels``; ``fail_back``, ``telemetry_stale`` and ``budget_exceeded`` hooks
        fire as :func:`predictor.hooks.guardrails.decide` describes. A hook with
        ``dry_run = true`` is recorded as ``dry_run`` and never sent.
    store : RiskStore
        Where the calls are recorded and the cooldown and idempotency are checked.
    home : Path
        ``PREDICTOR_HOME``, for the ``{home}`` placeholder and the command environment.
    dry_run : bool, default=False
        Record ``dry_run`` instead of sending. Dry-run records use the idempotency key
        prefixed with ``"dry-run:"``, so a later real run still sends.
    budgets : sequence of BudgetConfig, default=()
        Failover budgets. Calls past a budget are recorded as ``held`` with the reason.

    Returns
    -------
    list of HookCallRecord
        The records added by this call, in order. Calls already recorded under the same
        hook and idempotency key are skipped without a new record, so re-running the same
        scoring does not call a hook twice.

    Notes
    -----
    The cooldown is measured in scoring time: an entry is recorded as
    ``skipped_cooldown`` when the same hook was delivered for the same component at a
    scoring time less than ``cooldown_minutes`` earlier. Replays therefore behave like
    live runs.

    A failed call is recorded once and is not retried, not even when the same scoring
    runs again. Two processes that dispatch the same event at the same moment can both
    send it, though only one record is stored.
    """
    records = []
    for decision in guarded_calls(events, hooks, store, budgets=budgets, dry_run=dry_run):
        if decision.held:
            record = record_held(decision, store, dry_run=dry_run)
        else:
            hook_dry_run = dry_run or decision.hook.dry_run
            record = _dispatch_one(
                decision.event, decision.hook, store, home=home, dry_run=hook_dry_run
            )
        if record is not None:
            records.append(record)
    return records
