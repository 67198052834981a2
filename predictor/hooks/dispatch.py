"""Decide which hooks to call for level entries, and queue those decisions in the outbox.

:func:`decide_actions` is the one decision step: events, hooks and the store's record of
earlier actions in, the actions to queue out. It sends nothing, so a caller can filter or
change the actions (guardrails) before they are written, and the scoring job writes them
in the same transaction as the scores (:meth:`RiskStore.write_scores_and_actions`).
:func:`predictor.hooks.delivery.deliver_pending` sends them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from predictor.config import HookConfig
from predictor.hooks.delivery import deliver_pending
from predictor.hooks.payload import HookEvent
from predictor.store import HookAction, RiskStore

logger = logging.getLogger(__name__)

#: Prefix of the idempotency key of a dry-run record, so a dry run never blocks a real call.
DRY_RUN_KEY_PREFIX = "dry-run:"

#: Statuses of earlier actions that start a cooldown: sent, or queued to be sent.
COOLDOWN_STATUSES = ("pending", "delivered")


def _cooldown_start(
    hook: HookConfig,
    event: HookEvent,
    store: RiskStore,
    decided: dict[tuple[str, str], list[pd.Timestamp]],
    *,
    dry_run: bool,
) -> pd.Timestamp | None:
    """Return the scoring time of the action that puts ``event`` in cooldown, or None."""
    if hook.cooldown_minutes <= 0:
        return None
    # A dry run counts its own would-be deliveries, so it predicts what a real run skips.
    statuses = (*COOLDOWN_STATUSES, "dry_run") if dry_run else COOLDOWN_STATUSES
    stored = store.last_delivered_call(
        hook.name, event.component, at_or_before=event.scored_at, statuses=statuses
    )
    earlier = [t for t in decided.get((hook.name, event.component), []) if t <= event.scored_at]
    candidates = [t for t in (stored, *earlier) if t is not None]
    if not candidates:
        return None
    last = max(candidates)
    if event.scored_at - last < pd.Timedelta(minutes=hook.cooldown_minutes):
        return last
    return None


def decide_actions(
    events: Sequence[HookEvent],
    hooks: Sequence[HookConfig],
    store: RiskStore,
    *,
    dry_run: bool = False,
    now: Any = None,
) -> list[HookAction]:
    """Return the hook actions to queue for ``events``, without sending or storing them.

    Parameters
    ----------
    events : sequence of HookEvent
        Level entries. Events whose ``previous_level`` equals ``level`` are ignored.
        They are decided in scoring-time order, whatever the input order.
    hooks : sequence of HookConfig
        Configured hooks; a hook fires for an event whose level is in its ``on_levels``.
    store : RiskStore
        Read for actions already recorded (same hook and idempotency key: skipped) and
        for the cooldown.
    dry_run : bool, default=False
        Decide ``dry_run`` actions, which are recorded and never sent. Their idempotency
        key is prefixed with ``"dry-run:"``, so a later real run still sends.
    now : datetime-like or None, default=None
        Decision time (``called_at``, and when a pending action is first due); None is
        the current time.

    Returns
    -------
    list of HookAction
        One per hook and new level entry, in scoring-time order: ``pending`` to send,
        ``skipped_cooldown`` when the same hook was sent or queued for the component at a
        scoring time less than ``cooldown_minutes`` earlier, or ``dry_run``.

    Notes
    -----
    The cooldown is measured in scoring time, so replays behave like live runs. Actions
    decided earlier in the same call count toward it, as stored ones do.
    """
    decided_at = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    actions: list[HookAction] = []
    seen: set[tuple[str, str]] = set()
    sent_times: dict[tuple[str, str], list[pd.Timestamp]] = {}
    for event in sorted(events, key=lambda item: item.scored_at):
        if event.previous_level == event.level:
            logger.debug("hook event for %s: level %s unchanged", event.component, event.level)
            continue
        for hook in hooks:
            if event.level not in hook.on_levels:
                continue
            action = _decide_one(event, hook, store, sent_times, seen, decided_at, dry_run)
            if action is None:
                continue
            actions.append(action)
            if action.status in ("pending", "dry_run"):
                sent_times.setdefault((hook.name, event.component), []).append(event.scored_at)
    return actions


def _decide_one(
    event: HookEvent,
    hook: HookConfig,
    store: RiskStore,
    sent_times: dict[tuple[str, str], list[pd.Timestamp]],
    seen: set[tuple[str, str]],
    decided_at: pd.Timestamp,
    dry_run: bool,
) -> HookAction | None:
    key = event.idempotency_key
    stored_key = DRY_RUN_KEY_PREFIX + key if dry_run else key
    if (hook.name, stored_key) in seen:
        return None
    seen.add((hook.name, stored_key))
    recorded = store.has_hook_call(hook.name, key)
    if dry_run and not recorded:
        recorded = store.has_hook_call(hook.name, stored_key)
    if recorded:
        logger.debug("hook %s: %s already recorded, not decided again", hook.name, key)
        return None

    last = _cooldown_start(hook, event, store, sent_times, dry_run=dry_run)
    if last is not None:
        status = "skipped_cooldown"
        detail = (
            f"last action scored at {last.isoformat()}, within the "
            f"{hook.cooldown_minutes:g} min cooldown"
        )
    elif dry_run:
        status, detail = "dry_run", "dry run: not sent"
    else:
        status, detail = "pending", "queued"
    logger.info(
        "hook %s: component %s entered %s at %s: %s",
        hook.name,
        event.component,
        event.level,
        event.scored_at.isoformat(),
        status,
    )
    return HookAction(
        hook=hook.name,
        component=event.component,
        level=event.level,
        previous_level=event.previous_level,
        scored_at=event.scored_at,
        called_at=decided_at,
        status=status,
        attempt_detail=detail,
        payload=event.to_payload(),
        idempotency_key=stored_key,
        next_attempt_at=decided_at if status == "pending" else None,
    )


def dispatch_hooks(
    events: Sequence[HookEvent],
    hooks: Sequence[HookConfig],
    store: RiskStore,
    *,
    home: Path,
    dry_run: bool = False,
) -> list[HookAction]:
    """Decide, queue and make one delivery attempt for each new level entry.

    This is :func:`decide_actions`, :meth:`RiskStore.enqueue_actions` and
    :func:`~predictor.hooks.delivery.deliver_pending` limited to the new actions, for
    callers that have no scores to write with the actions.

    Parameters
    ----------
    events, hooks, store, dry_run
        As for :func:`decide_actions`.
    home : Path
        ``PREDICTOR_HOME``, for the ``{home}`` placeholder and the command environment.

    Returns
    -------
    list of HookAction
        The actions added by this call, as stored after their first attempt: a failed
        attempt leaves the action ``pending`` with its next attempt scheduled (or
        ``dead`` when not retryable or out of attempts). Actions already recorded under
        the same hook and idempotency key are not added again.
    """
    actions = decide_actions(events, hooks, store, dry_run=dry_run)
    ids = store.enqueue_actions(actions)
    if not dry_run and ids:
        deliver_pending(store, hooks, home=home, ids=ids, max_actions=len(ids))
    stored = [store.hook_action(action_id) for action_id in sorted(ids)]
    return [action for action in stored if action is not None]
