"""Scoring and delivery loop that the crash test kills with SIGKILL and restarts.

Usage: python crash_worker.py STORE_URL HOOK_URL CYCLES COMPONENTS

Each cycle writes one score per component and the hook actions of its level entries in
one transaction (as ``predictor score`` does), then delivers the due actions. A cycle
whose scores are stored is skipped, as a re-run skips stored scores. Levels follow a
fixed pattern, so the test knows every decision that must exist.
"""

from __future__ import annotations

import sys

import pandas as pd

from predictor.config import HookConfig
from predictor.hooks import decide_actions, deliver_pending, level_entries
from predictor.store import RiskStore

T0 = pd.Timestamp("2024-05-01 00:00", tz="UTC")
LEVELS = ("normal", "high", "critical")


def level(cycle: int, component: int) -> str:
    """Level of a component at a cycle: a fixed pattern with frequent entries."""
    return LEVELS[(cycle + component) // 2 % 3]


def hooks(url: str) -> list[HookConfig]:
    return [
        HookConfig(
            name="pager",
            type="webhook",
            url=url,
            on_levels=("high", "critical"),
            cooldown_minutes=0.0,
            timeout_seconds=2.0,
            max_attempts=1000,
            backoff_seconds=0.05,
            backoff_max_seconds=0.1,
            breaker_failures=1000,
        )
    ]


def main(store_url: str, url: str, cycles: int, components: int) -> None:
    store = RiskStore(store_url)
    configured = hooks(url)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for cycle in range(cycles):
        scored_at = T0 + pd.Timedelta(minutes=5 * cycle)
        names = [f"gpu-{j}" for j in range(components)]
        last = store.last_score(names[-1])
        if last is not None and last["scored_at"] >= scored_at:
            continue
        frame = pd.DataFrame(
            {
                "component": names,
                "scored_at": scored_at,
                "risk": 0.5,
                "level": [level(cycle, j) for j in range(components)],
                "previous_level": [
                    level(cycle - 1, j) if cycle > 0 else None for j in range(components)
                ],
                "model_version": "1",
            }
        )
        events = level_entries(frame, horizon_minutes=60)
        store.write_scores_and_actions(frame, decide_actions(events, configured, store))
        deliver_pending(store, configured, lease_seconds=1.0, max_actions=20)
    while not store.hook_calls(status="pending").empty:
        deliver_pending(store, configured, lease_seconds=1.0)
    store.close()
    sys.stdout.write("done\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
