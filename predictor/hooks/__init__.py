"""Failover hooks: level-entry events, the outbox, its delivery worker and the senders.

A hook is called when a component enters one of its ``on_levels``. The decision to call
it is written to the risk store's outbox with the scores that caused it; a delivery
worker sends it at least once, with retries, a dead-letter state and a circuit breaker
per target. A cooldown per hook and component, measured in scoring time, stops repeats,
and an idempotency key stops a re-run from queueing twice.
"""

from __future__ import annotations

from predictor.hooks.breaker import BreakerState, breaker_states
from predictor.hooks.delivery import DeliveryReport, deliver_pending
from predictor.hooks.dispatch import decide_actions, dispatch_hooks
from predictor.hooks.payload import SCHEMA_VERSION, HookEvent, level_entries
from predictor.hooks.senders import SendResult, run_command, send_webhook
from predictor.hooks.signing import sign, verify_signature
from predictor.store import HookAction, HookCallRecord

__all__ = [
    "SCHEMA_VERSION",
    "BreakerState",
    "DeliveryReport",
    "HookAction",
    "HookCallRecord",
    "HookEvent",
    "SendResult",
    "breaker_states",
    "decide_actions",
    "deliver_pending",
    "dispatch_hooks",
    "level_entries",
    "run_command",
    "send_webhook",
    "sign",
    "verify_signature",
]
