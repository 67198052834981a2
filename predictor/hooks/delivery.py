"""Delivery worker: send pending hook actions from the outbox, at least once.

Each action is claimed with a lease, sent with the hook's timeout, and then marked
``delivered``, made due again after an exponential backoff with jitter (or the receiver's
``Retry-After``), or moved to ``dead`` after ``max_attempts``. A worker killed while
sending leaves its action pending. The action becomes due again when the lease expires,
so the receiver may see it twice, with the same idempotency key.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from predictor.config import HookConfig
from predictor.hooks import breaker
from predictor.hooks.senders import SendResult, run_command, send_webhook
from predictor.store import HookAction, RiskStore

logger = logging.getLogger(__name__)

#: Seconds a claim outlives the hook timeout, for the database writes around a send.
LEASE_MARGIN_SECONDS = 30.0


@dataclass
class DeliveryReport:
    """Outcome counts of one :func:`deliver_pending` call.

    Attributes
    ----------
    attempted : int
        Actions sent (each counts one attempt).
    delivered : int
        Actions the receiver accepted.
    retried : int
        Failed attempts whose action is due again later.
    dead : int
        Actions moved to ``dead``.
    deferred : int
        Actions not sent because their target's circuit breaker was open.
    lost_lease : int
        Outcomes not recorded because another worker had taken the action over.
    ids : list of int
        Every action this call claimed.
    """

    attempted: int = 0
    delivered: int = 0
    retried: int = 0
    dead: int = 0
    deferred: int = 0
    lost_lease: int = 0
    ids: list[int] = field(default_factory=list)


def default_worker_id() -> str:
    """Return a worker name unique to this process: host, process id and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def backoff_delay(hook: HookConfig, attempts: int, rng: random.Random) -> float:
    """Return seconds before the next attempt after ``attempts`` failed ones.

    The delay doubles per attempt from ``backoff_seconds`` up to ``backoff_max_seconds``
    and is drawn uniformly from its upper half ("equal jitter"), so workers that failed
    together do not retry together.
    """
    ceiling = min(hook.backoff_max_seconds, hook.backoff_seconds * 2.0 ** max(attempts - 1, 0))
    return ceiling / 2.0 + rng.uniform(0.0, ceiling / 2.0)


def send_action(hook: HookConfig, payload: dict[str, Any], home: Path | None) -> SendResult:
    """Send one payload through ``hook`` (a webhook POST or a command) and return the result."""
    if hook.type == "webhook":
        return send_webhook(hook, payload)
    if hook.type == "command":
        env = {"PREDICTOR_HOME": str(home)} if home is not None else None
        return run_command(hook, payload, env, home=home)
    return SendResult(
        False,
        f"hook {hook.name!r}: type {hook.type!r} has no sender in the delivery worker",
        retryable=False,
    )


def _now(fixed: pd.Timestamp | None) -> pd.Timestamp:
    return fixed if fixed is not None else pd.Timestamp.now(tz="UTC")


def deliver_pending(
    store: RiskStore,
    hooks: Sequence[HookConfig],
    *,
    home: Path | None = None,
    now: Any = None,
    max_actions: int = 100,
    worker_id: str | None = None,
    lease_seconds: float | None = None,
    ids: Sequence[int] | None = None,
    rng: random.Random | None = None,
) -> DeliveryReport:
    """Send the due pending actions of ``store``, one claimed action at a time.

    Parameters
    ----------
    store : RiskStore
        The outbox.
    hooks : sequence of HookConfig
        Configured hooks, looked up by the action's hook name. An action whose hook is
        no longer configured is moved to ``dead``.
    home : Path or None, default=None
        ``PREDICTOR_HOME``, for command hooks.
    now : datetime-like or None, default=None
        Fixed current time (tests, replays); None reads the clock before each claim.
    max_actions : int, default=100
        Maximum number of actions to claim in this call.
    worker_id : str or None, default=None
        Lease owner name; None makes one unique to this process.
    lease_seconds : float or None, default=None
        How long a claim lasts; None is the largest hook timeout plus 30 s.
    ids : sequence of int or None, default=None
        Only deliver these actions.
    rng : random.Random or None, default=None
        Source of the backoff jitter.

    Returns
    -------
    DeliveryReport
    """
    fixed = None if now is None else pd.Timestamp(now).tz_convert("UTC")
    worker = worker_id or default_worker_id()
    rng = rng or random.Random()
    by_name = {hook.name: hook for hook in hooks}
    if lease_seconds is None:
        longest = max((hook.timeout_seconds for hook in hooks), default=10.0)
        lease_seconds = longest + LEASE_MARGIN_SECONDS
    report = DeliveryReport()
    while len(report.ids) < max_actions:
        claimed = store.claim_hook_actions(
            worker_id=worker, now=_now(fixed), lease_seconds=lease_seconds, limit=1, ids=ids
        )
        if not claimed:
            break
        action = claimed[0]
        assert action.id is not None  # rows read from the store carry their id
        report.ids.append(action.id)
        _deliver_one(store, action, by_name.get(action.hook), worker, fixed, home, rng, report)
    if report.ids:
        logger.info(
            "hook delivery %s: %d claimed, %d delivered, %d to retry, %d dead, "
            "%d held by an open breaker",
            worker,
            len(report.ids),
            report.delivered,
            report.retried,
            report.dead,
            report.deferred,
        )
    return report


def _deliver_one(
    store: RiskStore,
    action: HookAction,
    hook: HookConfig | None,
    worker: str,
    fixed: pd.Timestamp | None,
    home: Path | None,
    rng: random.Random,
    report: DeliveryReport,
) -> None:
    assert action.id is not None
    if hook is None:
        detail = f"hook {action.hook!r} is not configured any more; not sent"
        _finish(store, action, worker, report, status="dead", detail=detail, now=_now(fixed))
        return

    state = breaker.breaker_state(store, hook, _now(fixed))
    if state.state == "open" and state.retry_at is not None:
        detail = (
            f"circuit breaker open for {state.target} after {state.consecutive_failures} "
            f"consecutive failures; waits until {state.retry_at.isoformat()}"
        )
        report.deferred += 1
        _finish(
            store,
            action,
            worker,
            report,
            status="pending",
            detail=detail,
            now=_now(fixed),
            next_attempt_at=state.retry_at,
            refund_attempt=True,
        )
        return

    report.attempted += 1
    result = send_action(hook, dict(action.payload), home)
    now = _now(fixed)
    retryable = not result.ok and result.retryable
    if result.ok or retryable:
        breaker.record_result(store, hook, ok=result.ok, now=now)
    if result.ok:
        report.delivered += 1
        _finish(store, action, worker, report, status="delivered", detail=result.detail, now=now)
        logger.info(
            "hook %s: %s delivered on attempt %d (%s)",
            hook.name,
            action.idempotency_key,
            action.attempts,
            result.detail,
        )
        return
    if not retryable or action.attempts >= hook.max_attempts:
        report.dead += 1
        reason = "not retryable" if not retryable else f"{action.attempts} attempts used"
        detail = f"{result.detail} ({reason})"
        _finish(store, action, worker, report, status="dead", detail=detail, now=now)
        logger.error(
            "hook %s: %s dead-lettered after attempt %d of %d: %s",
            hook.name,
            action.idempotency_key,
            action.attempts,
            hook.max_attempts,
            detail,
        )
        return
    if result.retry_after is not None:
        delay = result.retry_after
    else:
        delay = backoff_delay(hook, action.attempts, rng)
    report.retried += 1
    _finish(
        store,
        action,
        worker,
        report,
        status="pending",
        detail=result.detail,
        now=now,
        next_attempt_at=now + pd.Timedelta(seconds=delay),
    )
    logger.warning(
        "hook %s: %s attempt %d of %d failed: %s; next attempt in %.1f s",
        hook.name,
        action.idempotency_key,
        action.attempts,
        hook.max_attempts,
        result.detail,
        delay,
    )


def _finish(
    store: RiskStore,
    action: HookAction,
    worker: str,
    report: DeliveryReport,
    **outcome: Any,
) -> None:
    assert action.id is not None
    if not store.finish_hook_attempt(action.id, worker, **outcome):
        report.lost_lease += 1
        logger.warning(
            "hook %s: %s was taken over by another worker after its lease expired; "
            "outcome %s not recorded",
            action.hook,
            action.idempotency_key,
            outcome["status"],
        )
