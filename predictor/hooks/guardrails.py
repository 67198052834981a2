"""Guardrails between level changes and hook calls: budgets, stale telemetry, fail-back.

:func:`decide` is a pure function. Given the level changes of one scoring time, the
hooks, the failover budgets and the failover state read from the risk store, it returns
one :class:`Decision` per hook call: the call goes ahead, or it is held with a reason.
It also adds the calls that the guardrails raise themselves: ``telemetry_stale``,
``fail_back`` and ``budget_exceeded`` events for hooks of those kinds.

A component is *in failover* from its latest failover action (a call of a ``failover``
hook recorded as ``pending``, ``delivered``, ``failed`` or ``dead``, and in a dry run
also ``dry_run``) until a later score puts it back to ``normal``. A failed or dead call
counts, because the receiver may have acted before the error. The state is read from the
store (:func:`read_failover_state`), so every scoring process and shard sees the same
count.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from predictor.config import LEVELS, BudgetConfig, HookConfig
from predictor.hooks.payload import HookEvent
from predictor.store import HookCallRecord, RiskStore, hook_calls_table, scores_table

logger = logging.getLogger(__name__)

UNKNOWN = "unknown"

#: Recorded statuses of a failover call that may have failed a component over.
FAILOVER_STATUSES = ("pending", "delivered", "failed", "dead")

#: Window of the per-hour budget limits, in scoring time.
BUDGET_WINDOW = pd.Timedelta(hours=1)

#: Prefix of the idempotency key of a dry-run record. The real action's key differs, so a
#: dry-run record does not count as that action already decided.
DRY_RUN_KEY_PREFIX = "dry-run:"


@dataclass(frozen=True)
class FailoverState:
    """Failover state of the fleet just before one scoring time.

    Attributes
    ----------
    at : pandas.Timestamp
        Scoring time the state is read for.
    in_failover : frozenset of str
        Components in failover.
    entered_last_hour : frozenset of str
        Components with a failover action in the hour up to and including ``at``.
    groups : mapping of str to str or None
        Group of every component known to the store, for the budget percentages.
    """

    at: pd.Timestamp
    in_failover: frozenset[str] = frozenset()
    entered_last_hour: frozenset[str] = frozenset()
    groups: Mapping[str, str | None] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """One hook call for one event, and the reason it is held (None when it goes ahead)."""

    event: HookEvent
    hook: HookConfig
    held_reason: str | None = None

    @property
    def held(self) -> bool:
        """Whether a guardrail keeps this call back."""
        return self.held_reason is not None


def is_entry(previous_level: str | None, level: str) -> bool:
    """Return whether moving from ``previous_level`` to ``level`` enters a worse level.

    A recovery from critical to high has not entered high. Leaving ``unknown`` (or
    having no previous level) counts as an entry, because nothing was known.
    """
    if level not in LEVELS:
        return False
    previous_rank = LEVELS.index(previous_level) if previous_level in LEVELS else -1
    return LEVELS.index(level) > previous_rank


def is_failover_hook(hook: HookConfig) -> bool:
    """Return whether ``hook`` is an action that counts against the failover budgets."""
    return hook.kind == "failover" and hook.type != "alertmanager"


def decide(
    events: Iterable[HookEvent],
    hooks: Sequence[HookConfig],
    state: FailoverState,
    budgets: Sequence[BudgetConfig] = (),
    *,
    dry_run: bool = False,
) -> list[Decision]:
    """Decide which hook calls the level changes of one scoring time make.

    Parameters
    ----------
    events : iterable of HookEvent
        Level changes scored at ``state.at``. Events whose level did not change, and
        events that are not ``level_entered``, are ignored.
    hooks : sequence of HookConfig
        Configured hooks. ``alertmanager`` hooks are never called here, because they
        follow the stored levels on every scoring run instead.
    state : FailoverState
        Failover state just before ``state.at``.
    budgets : sequence of BudgetConfig, default=()
        Failover budgets; each one applies on its own.
    dry_run : bool, default=False
        Whether the whole run is a dry run. A call of a hook with ``dry_run = true``
        in a real run sends nothing, so it does not use up the budget.

    Returns
    -------
    list of Decision
        In event order (scoring time, then component), with the ``budget_exceeded``
        calls last:

        - entry into a level in a ``failover`` hook's ``on_levels``: the call goes
          ahead, unless the component is new to failover and a budget is used up,
          in which case every failover call of the component is held;
        - entry into ``unknown``: never a failover call; each ``telemetry_stale`` hook
          is called with a ``telemetry_stale`` event;
        - return to ``normal`` of a component in failover: each ``fail_back`` hook is
          called with a ``fail_back`` event, or held when the previous level was
          ``unknown``, because one fresh score after a silence is not a confirmed
          recovery;
        - one ``budget_exceeded`` event per budget scope that held a call, for each
          ``budget_exceeded`` hook.
    """
    failover_hooks = [hook for hook in hooks if is_failover_hook(hook)]
    stale_hooks = [hook for hook in hooks if hook.kind == "telemetry_stale"]
    fail_back_hooks = [hook for hook in hooks if hook.kind == "fail_back"]
    in_failover = set(state.in_failover)
    entered = set(state.entered_last_hour)
    held_by_scope: dict[str, tuple[HookEvent, dict[str, object], list[str]]] = {}

    decisions: list[Decision] = []
    for event in sorted(events, key=lambda item: (item.scored_at, item.component)):
        if event.event != "level_entered" or event.previous_level == event.level:
            continue
        if event.level == UNKNOWN:
            # The risk of an unknown score comes from the last known values, so it is left
            # out rather than read as current.
            stale = dataclasses.replace(event, event="telemetry_stale", risk=None, raw_risk=None)
            decisions.extend(Decision(stale, hook) for hook in stale_hooks)
            continue
        if event.level == "normal":
            if event.component in in_failover:
                decisions.extend(_fail_back(event, fail_back_hooks))
                in_failover.discard(event.component)
            continue
        if not is_entry(event.previous_level, event.level):
            continue

        matching = [hook for hook in failover_hooks if event.level in hook.on_levels]
        if not matching:
            continue
        if event.component in in_failover:
            # Already failed over: a further entry (high, then critical) uses no budget.
            decisions.extend(Decision(event, hook) for hook in matching)
            continue
        violation = budget_violation(
            event.component, event.group, state.groups, in_failover, entered, budgets
        )
        if violation is not None:
            scope, reason, budget = violation
            decisions.extend(Decision(event, hook, reason) for hook in matching)
            held_by_scope.setdefault(scope, (event, budget, []))[2].append(event.component)
            continue
        decisions.extend(Decision(event, hook) for hook in matching)
        if dry_run or any(not hook.dry_run for hook in matching):
            in_failover.add(event.component)
            entered.add(event.component)

    budget_hooks = [hook for hook in hooks if hook.kind == "budget_exceeded"]
    for scope, (first, budget, held) in held_by_scope.items():
        alert = HookEvent(
            component=scope,
            group=first.group if scope.startswith("group:") else None,
            level=first.level,
            previous_level=None,
            risk=None,
            scored_at=first.scored_at,
            horizon_minutes=first.horizon_minutes,
            model_version=first.model_version,
            event="budget_exceeded",
            budget={**budget, "held": held},
        )
        decisions.extend(Decision(alert, hook) for hook in budget_hooks)
    return decisions


def _fail_back(event: HookEvent, hooks: Sequence[HookConfig]) -> list[Decision]:
    fail_back = dataclasses.replace(event, event="fail_back")
    reason = None
    if event.previous_level in (None, UNKNOWN):
        reason = (
            f"component {event.component} returned to normal straight from "
            f"{event.previous_level or 'no level'}; one fresh score after a silence is not "
            "a confirmed recovery, so fail back by hand or retry this call"
        )
    return [Decision(fail_back, hook, reason) for hook in hooks]


def budget_violation(
    component: str,
    group: str | None,
    groups: Mapping[str, str | None],
    in_failover: set[str] | frozenset[str],
    entered: set[str] | frozenset[str],
    budgets: Sequence[BudgetConfig],
) -> tuple[str, str, dict[str, object]] | None:
    """Return the first budget that one more failover of ``component`` would exceed.

    Returns
    -------
    tuple of (str, str, dict) or None
        The scope (``group:NAME`` or ``fleet``), the reason for the held record, and the
        budget details for the ``budget_exceeded`` payload; None when every budget has
        room.
    """
    for budget in budgets:
        if budget.scope == "fleet":
            scope = "fleet"
            members = {*groups, component}
        else:
            if group is None or budget.group not in (None, group):
                continue
            scope = f"group:{group}"
            members = {name for name, name_group in groups.items() if name_group == group}
            members.add(component)
        size = len(members)
        at_once = len(members & in_failover)
        last_hour = len(members & entered)
        limits = (
            ("max_components", budget.max_components, budget.max_components, at_once),
            ("max_percent", budget.max_percent, _share(budget.max_percent, size), at_once),
            ("max_per_hour", budget.max_per_hour, budget.max_per_hour, last_hour),
            (
                "max_percent_per_hour",
                budget.max_percent_per_hour,
                _share(budget.max_percent_per_hour, size),
                last_hour,
            ),
        )
        for key, value, allowed, count in limits:
            if allowed is None or count + 1 <= allowed:
                continue
            window = "per hour" if key.endswith("per_hour") else "at once"
            reason = (
                f"failover budget {scope} {key} = {value:g}: at most {allowed} of {size} "
                f"components may fail over {window}, and {count} already did; "
                f"component {component} held"
            )
            details: dict[str, object] = {
                "scope": scope,
                "limit": key,
                "limit_value": value,
                "allowed": allowed,
                "components": size,
                "count": count,
                "window": window,
            }
            return scope, reason, details
    return None


def _share(percent: float | None, size: int) -> int | None:
    if percent is None:
        return None
    # The small epsilon keeps 20 % of 10 at 2 despite binary rounding of the product.
    return math.floor(percent * size / 100.0 + 1e-9)


def read_failover_state(
    store: RiskStore, hooks: Sequence[HookConfig], at: pd.Timestamp, *, dry_run: bool = False
) -> FailoverState:
    """Read the failover state just before scoring time ``at`` from the risk store.

    Parameters
    ----------
    store : RiskStore
    hooks : sequence of HookConfig
        Configured hooks; calls of their ``failover`` hooks make the state.
    at : pandas.Timestamp
        Tz-aware scoring time. A normal score at ``at`` itself does not end a failover
        yet, so the fail-back of that score still sees the component in failover.
    dry_run : bool, default=False
        Also count ``dry_run`` records as failover actions, so a dry run predicts what
        a real run would hold.

    Returns
    -------
    FailoverState
    """
    names = [hook.name for hook in hooks if is_failover_hook(hook)]
    statuses = [*FAILOVER_STATUSES, "dry_run"] if dry_run else list(FAILOVER_STATUSES)
    calls = hook_calls_table.c
    scores = scores_table.c

    acted = (
        sa.select(calls.component, sa.func.max(calls.scored_at).label("acted_at"))
        .where(calls.hook.in_(names), calls.status.in_(statuses), calls.scored_at <= at)
        .group_by(calls.component)
        .subquery()
    )
    recovered = (
        sa.select(sa.literal(1))
        .where(
            scores.component == acted.c.component,
            scores.level == "normal",
            scores.scored_at > acted.c.acted_at,
            scores.scored_at < at,
        )
        .exists()
    )
    in_failover_query = sa.select(acted.c.component).where(~recovered)
    hour_query = (
        sa.select(calls.component)
        .where(
            calls.hook.in_(names),
            calls.status.in_(statuses),
            calls.scored_at > at - BUDGET_WINDOW,
            calls.scored_at <= at,
        )
        .distinct()
    )
    groups_query = sa.select(scores.component, sa.func.max(scores.group_name)).group_by(
        scores.component
    )
    with store.engine.connect() as connection:
        in_failover = frozenset(connection.execute(in_failover_query).scalars())
        last_hour = frozenset(connection.execute(hour_query).scalars())
        groups = {component: group for component, group in connection.execute(groups_query)}
    return FailoverState(
        at=at, in_failover=in_failover, entered_last_hour=last_hour, groups=groups
    )


def guarded_calls(
    events: Iterable[HookEvent],
    hooks: Sequence[HookConfig],
    store: RiskStore,
    *,
    budgets: Sequence[BudgetConfig] = (),
    dry_run: bool = False,
) -> Iterator[Decision]:
    """Yield the decisions for ``events``, one scoring time after the other.

    The state for each scoring time is read from ``store`` when the previous time's
    decisions have been consumed, so the calls recorded for one time count against the
    budget of the next.
    """
    stateful = any(is_failover_hook(hook) or hook.kind == "fail_back" for hook in hooks)
    ordered = sorted(events, key=lambda event: event.scored_at)
    for at, group in itertools.groupby(ordered, key=lambda event: event.scored_at):
        batch = list(group)
        # Entries into unknown need no state, so a silence costs no query.
        if stateful and any(event.level != UNKNOWN for event in batch):
            state = read_failover_state(store, hooks, at, dry_run=dry_run)
        else:
            state = FailoverState(at=at)
        yield from decide(batch, hooks, state, budgets, dry_run=dry_run)


def record_held(
    decision: Decision, store: RiskStore, *, dry_run: bool = False
) -> HookCallRecord | None:
    """Record a held call with status ``held`` and its reason; None if already recorded."""
    key = decision.event.idempotency_key
    stored_key = DRY_RUN_KEY_PREFIX + key if dry_run else key
    record = HookCallRecord(
        hook=decision.hook.name,
        component=decision.event.component,
        level=decision.event.level,
        previous_level=decision.event.previous_level,
        scored_at=decision.event.scored_at,
        called_at=pd.Timestamp.now(tz="UTC"),
        status="held",
        attempt_detail=decision.held_reason or "",
        payload=decision.event.to_payload(),
        idempotency_key=stored_key,
    )
    if not store.record_hook_call(record):
        return None
    logger.warning(
        "hook %s: %s event of component %s at %s held: %s",
        decision.hook.name,
        decision.event.event,
        decision.event.component,
        decision.event.scored_at.isoformat(),
        decision.held_reason,
    )
    return record
