"""Operator actions on the hook outbox: requeue an action, send a marked test payload."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from predictor.config import HookConfig
from predictor.exceptions import PredictorUserError
from predictor.hooks.alertmanager import hook_payload
from predictor.hooks.delivery import deliver_pending
from predictor.hooks.payload import HookEvent
from predictor.store import HookAction, RiskStore

logger = logging.getLogger(__name__)

#: Statuses an operator may send again: attempts used up, or held back by a guardrail.
RETRYABLE_STATUSES = ("dead", "held", "failed")


def retry_action(store: RiskStore, action_id: int) -> HookAction:
    """Make a ``dead``, ``held`` or ``failed`` action pending again with fresh attempts.

    Returns
    -------
    HookAction
        The action as it was before the retry.

    Raises
    ------
    PredictorUserError
        If no action has the id, or its status is not one that may be sent again.
    """
    action = store.hook_action(action_id)
    if action is None:
        raise PredictorUserError(f"hook action id {action_id!r}: no such action in the outbox")
    if action.status not in RETRYABLE_STATUSES:
        raise PredictorUserError(
            f"hook action {action_id}: status is {action.status!r}; only "
            f"{', '.join(RETRYABLE_STATUSES)} actions can be retried"
        )
    now = pd.Timestamp.now(tz="UTC")
    if not store.requeue_hook_action(action_id, now=now, statuses=RETRYABLE_STATUSES):
        raise PredictorUserError(
            f"hook action {action_id}: changed while retrying it; run `predictor hooks list`"
        )
    logger.info(
        "hook %s: action %d (%s) requeued by hand from %s",
        action.hook,
        action_id,
        action.idempotency_key,
        action.status,
    )
    return action


def send_test(
    store: RiskStore,
    hooks: Sequence[HookConfig],
    name: str,
    *,
    home: Path | None = None,
    horizon_minutes: float = 60.0,
) -> HookAction:
    """Queue a payload marked ``"test": true`` for hook ``name`` and make one attempt.

    The test goes through the outbox like a real action (signing, retries, breaker), so a
    failed test stays pending and is retried by later delivery runs.

    Raises
    ------
    PredictorUserError
        If no hook is called ``name``.
    """
    hook = next((item for item in hooks if item.name == name), None)
    if hook is None:
        known = ", ".join(sorted(item.name for item in hooks)) or "none configured"
        raise PredictorUserError(f"hook {name!r}: not configured; expected one of: {known}")
    now = pd.Timestamp.now(tz="UTC")
    event = HookEvent(
        component="predictor-test",
        group=None,
        level=hook.on_levels[0] if hook.on_levels else "critical",
        previous_level=None,
        risk=None,
        scored_at=now,
        horizon_minutes=horizon_minutes,
        event="test",
    )
    key = f"test:{name}:{now.isoformat()}"
    # The body follows the published schema, so a receiver that validates it accepts it.
    payload = {**hook_payload(hook, event), "test": True, "idempotency_key": key}
    action = HookAction(
        hook=name,
        component="predictor-test",
        level=event.level,
        previous_level=None,
        scored_at=now,
        called_at=now,
        status="pending",
        attempt_detail="test payload queued",
        payload=payload,
        idempotency_key=key,
        next_attempt_at=now,
    )
    ids = store.enqueue_actions([action])
    deliver_pending(store, hooks, home=home, ids=ids, max_actions=1)
    stored = store.hook_action(ids[0])
    assert stored is not None  # the row was inserted just above
    return stored
