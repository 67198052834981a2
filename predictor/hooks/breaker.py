"""Circuit breaker per hook target, stored in the risk store so every worker shares it.

A target is where a hook sends: the scheme and host of a webhook URL, or the program of a
command hook, so hooks that share a receiver share its breaker. The breaker opens after
``breaker_failures`` consecutive retryable failures; while it is open, due actions for the
target wait without spending an attempt. After ``breaker_cooldown_seconds`` it is half
open: the next attempt is a trial that closes it on success and opens it again on failure.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pandas as pd

from predictor.config import HookConfig
from predictor.store import RiskStore

logger = logging.getLogger(__name__)

#: Breaker states as reported by :func:`breaker_state` and :func:`breaker_states`.
BREAKER_STATES = ("closed", "open", "half_open")


@dataclass(frozen=True)
class BreakerState:
    """The circuit breaker of one hook target at one time.

    Attributes
    ----------
    target : str
        ``scheme://host:port`` of a webhook, or ``command:<program>``.
    state : str
        ``closed`` (sending), ``open`` (waiting) or ``half_open`` (next attempt is a trial).
    consecutive_failures : int
        Retryable failures since the last success.
    opened_at : pandas.Timestamp or None
        When the breaker last opened.
    retry_at : pandas.Timestamp or None
        When an open breaker becomes half open.
    """

    target: str
    state: str
    consecutive_failures: int
    opened_at: pd.Timestamp | None
    retry_at: pd.Timestamp | None


def breaker_target(hook: HookConfig) -> str:
    """Return the breaker target of ``hook``: ``scheme://netloc`` or ``command:<program>``."""
    if hook.type == "command":
        return f"command:{hook.argv[0] if hook.argv else ''}"
    parts = urllib.parse.urlsplit(hook.url or "")
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else f"{hook.type}:{hook.name}"


def _stamp(value: Any) -> pd.Timestamp | None:
    if value is None:
        return None
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _state(row: dict[str, Any] | None, target: str, cooldown_seconds: float, now: pd.Timestamp):
    if row is None:
        return BreakerState(target, "closed", 0, None, None)
    opened_at = _stamp(row["opened_at"])
    failures = int(row["consecutive_failures"])
    if row["state"] != "open" or opened_at is None:
        return BreakerState(target, "closed", failures, None, None)
    retry_at = opened_at + pd.Timedelta(seconds=cooldown_seconds)
    state = "half_open" if now >= retry_at else "open"
    return BreakerState(target, state, failures, opened_at, retry_at)


def breaker_state(store: RiskStore, hook: HookConfig, now: pd.Timestamp) -> BreakerState:
    """Return the breaker of ``hook``'s target at ``now``."""
    target = breaker_target(hook)
    return _state(store.breaker(target), target, hook.breaker_cooldown_seconds, now)


def breaker_states(
    store: RiskStore, hooks: tuple[HookConfig, ...] | list[HookConfig], now: Any = None
) -> list[BreakerState]:
    """Return the breaker of every configured hook target, for logs and ``/metrics``.

    Parameters
    ----------
    store : RiskStore
        Where the breakers are stored.
    hooks : sequence of HookConfig
        The configured hooks; a target without a stored row is reported closed.
    now : datetime-like or None, default=None
        Time at which to report; None is the current time.

    Returns
    -------
    list of BreakerState
        One per distinct target, ordered by target.
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else pd.Timestamp(now).tz_convert("UTC")
    rows = {row["target"]: row for row in store.breakers()}
    cooldowns: dict[str, float] = {}
    for hook in hooks:
        cooldowns.setdefault(breaker_target(hook), hook.breaker_cooldown_seconds)
    return [
        _state(rows.get(target), target, cooldowns[target], now) for target in sorted(cooldowns)
    ]


def record_result(
    store: RiskStore, hook: HookConfig, *, ok: bool, now: pd.Timestamp
) -> BreakerState:
    """Count one attempt's outcome for ``hook``'s target and log when the breaker changes."""
    target = breaker_target(hook)
    before = _state(store.breaker(target), target, hook.breaker_cooldown_seconds, now)
    row = store.record_breaker_result(target, ok=ok, now=now, threshold=hook.breaker_failures)
    after = _state(row, target, hook.breaker_cooldown_seconds, now)
    if after.state == "open" and before.state != "open":
        logger.warning(
            "hook breaker %s: opened after %d consecutive failures (threshold %d); "
            "next trial at %s",
            target,
            after.consecutive_failures,
            hook.breaker_failures,
            after.retry_at.isoformat() if after.retry_at is not None else "-",
        )
    elif after.state == "closed" and before.state != "closed":
        logger.info(
            "hook breaker %s: closed after a successful trial (%d failures before)",
            target,
            before.consecutive_failures,
        )
    return after
