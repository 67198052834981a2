"""Decide which hooks to call for level entries, and queue those decisions in the outbox.

:func:`decide_actions` is the one decision step: events, hooks and the store's record of
earlier actions in, the actions to queue out. The guardrails of
:mod:`predictor.hooks.guardrails` (budgets, stale telemetry, fail-back) make the
decisions; this module turns them into outbox rows. It sends nothing, and the scoring job
writes the actions in the same transaction as the scores
(:meth:`RiskStore.write_scores_and_actions`).
:func:`predictor.hooks.delivery.deliver_pending` sends them.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from predictor.config import BudgetConfig, HookConfig
from predictor.hooks.alertmanager import hook_payload
from predictor.hooks.delivery import deliver_pending
from predictor.hooks.guardrails import (
    BUDGET_WINDOW,
    DRY_RUN_KEY_PREFIX,
    UNKNOWN,
    FailoverState,
    decide,
    is_failover_hook,
    read_failover_state,
)
from predictor.hooks.payload import HookEvent
from predictor.store import HookAction, RiskStore

logger = logging.getLogger(__name__)

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
    budgets: Sequence[BudgetConfig] = (),
    groups: Mapping[str, str | None] | None = None,
) -> list[HookAction]:
    """Return the hook actions to queue for ``events``, without sending or storing them.

    Parameters
    ----------
    events : sequence of HookEvent
        Level changes. Events whose ``previous_level`` equals ``level`` are ignored.
        They are decided in scoring-time order, whatever the input order.
    hooks : sequence of HookConfig
        Configured hooks. A ``failover`` hook fires for an entry into a level in its
        ``on_levels``; ``fail_back``, ``telemetry_stale`` and ``budget_exceeded`` hooks
        fire as :func:`predictor.hooks.guardrails.decide` describes. A hook with
        ``dry_run = true`` gets ``dry_run`` actions only.
    store : RiskStore
        Read for actions already recorded (same hook and idempotency key: skipped), for
        the cooldown, and for the failover state that the budgets count.
    dry_run : bool, default=False
        Decide ``dry_run`` actions, which are recorded and never sent. Their idempotency
        key is prefixed with ``"dry-run:"``, so a later real run still sends.
    now : datetime-like or None, default=None
        Decision time (``called_at``, and when a pending action is first due); None is
        the current time.
    budgets : sequence of BudgetConfig, default=()
        Failover budgets; an action past a budget is ``held`` with the reason.
    groups : mapping of str to str or None, default=None
        Group of every configured component. A budget percentage is of the group's
        components in this mapping and in the store, so the first scoring run of a
        fleet counts the whole group and not only the components scored so far.

    Returns
    -------
    list of HookAction
        In scoring-time order: ``pending`` to send, ``held`` by a guardrail,
        ``skipped_cooldown`` when the same hook was sent or queued for the component at a
        scoring time less than ``cooldown_minutes`` earlier, or ``dry_run``.

    Notes
    -----
    The cooldown is measured in scoring time, so replays behave like live runs. Actions
    decided earlier in the same call count toward the cooldown and the failover state, as
    stored ones do, because they are written only after this call returns.
    """
    decided_at = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now)
    actions: list[HookAction] = []
    seen: set[tuple[str, str]] = set()
    sent_times: dict[tuple[str, str], list[pd.Timestamp]] = {}
    local = _LocalFailover()
    stateful = any(is_failover_hook(hook) or hook.kind == "fail_back" for hook in hooks)

    ordered = sorted(events, key=lambda item: item.scored_at)
    for at, group in itertools.groupby(ordered, key=lambda item: item.scored_at):
        batch = list(group)
        # Entries into unknown need no state, so a silence costs no query.
        if stateful and any(event.level != UNKNOWN for event in batch):
            state = local.apply(read_failover_state(store, hooks, at, dry_run=dry_run))
            if groups:
                state = dataclasses.replace(state, groups={**groups, **state.groups})
        else:
            state = FailoverState(at=at)

        for decision in decide(batch, hooks, state, budgets, dry_run=dry_run):
            hook_dry_run = dry_run or decision.hook.dry_run
            action = _decide_one(
                decision.event,
                decision.hook,
                store,
                sent_times,
                seen,
                decided_at,
                hook_dry_run,
                held_reason=decision.held_reason,
            )
            if action is None:
                continue
            actions.append(action)
            if action.status in ("pending", "dry_run"):
                key = (decision.hook.name, decision.event.component)
                sent_times.setdefault(key, []).append(decision.event.scored_at)
                if is_failover_hook(decision.hook) and (dry_run or not decision.hook.dry_run):
                    local.entered(decision.event.component, at)
        for event in batch:
            if event.level == "normal":
                local.recovered(event.component)
    return actions


@dataclasses.dataclass
class _LocalFailover:
    """Failover changes decided in one call and not yet written to the store."""

    in_failover: dict[str, bool] = dataclasses.field(default_factory=dict)
    entries: list[tuple[str, pd.Timestamp]] = dataclasses.field(default_factory=list)

    def entered(self, component: str, at: pd.Timestamp) -> None:
        self.in_failover[component] = True
        self.entries.append((component, at))

    def recovered(self, component: str) -> None:
        if component in self.in_failover:
            self.in_failover[component] = False

    def apply(self, state: FailoverState) -> FailoverState:
        """Return ``state`` with this call's earlier decisions added."""
        if not self.in_failover:
            return state
        in_failover = set(state.in_failover)
        for component, failed_over in self.in_failover.items():
            if failed_over:
                in_failover.add(component)
            else:
                in_failover.discard(component)
        recent = {component for component, at in self.entries if state.at - at < BUDGET_WINDOW}
        return dataclasses.replace(
            state,
            in_failover=frozenset(in_failover),
            entered_last_hour=state.entered_last_hour | recent,
        )


def _decide_one(
    event: HookEvent,
    hook: HookConfig,
    store: RiskStore,
    sent_times: dict[tuple[str, str], list[pd.Timestamp]],
    seen: set[tuple[str, str]],
    decided_at: pd.Timestamp,
    dry_run: bool,
    *,
    held_reason: str | None = None,
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

    last = None
    if held_reason is None:
        last = _cooldown_start(hook, event, store, sent_times, dry_run=dry_run)
    if held_reason is not None:
        status, detail = "held", held_reason
    elif last is not None:
        status = "skipped_cooldown"
        detail = (
            f"last action scored at {last.isoformat()}, within the "
            f"{hook.cooldown_minutes:g} min cooldown"
        )
    elif dry_run:
        status, detail = "dry_run", "dry run: not sent"
    else:
        status, detail = "pending", "queued"
    log = logger.warning if status == "held" else logger.info
    log(
        "hook %s: %s of component %s to %s at %s: %s (%s)",
        hook.name,
        event.event,
        event.component,
        event.level,
        event.scored_at.isoformat(),
        status,
        detail,
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
        payload=hook_payload(hook, event),
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
    budgets: Sequence[BudgetConfig] = (),
) -> list[HookAction]:
    """Decide, queue and make one delivery attempt for each new level change.

    This is :func:`decide_actions`, :meth:`RiskStore.enqueue_actions` and
    :func:`~predictor.hooks.delivery.deliver_pending` limited to the new actions, for
    callers that have no scores to write with the actions.

    Parameters
    ----------
    events, hooks, store, dry_run, budgets
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
    actions = decide_actions(events, hooks, store, dry_run=dry_run, budgets=budgets)
    ids = store.enqueue_actions(actions)
    if not dry_run and ids:
        deliver_pending(store, hooks, home=home, ids=ids, max_actions=len(ids))
    stored = [store.hook_action(action_id) for action_id in sorted(ids)]
    return [action for action in stored if action is not None]
