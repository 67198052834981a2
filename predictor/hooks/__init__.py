"""Failover hooks: level-entry events, webhook and command senders, and dispatch.

A hook is called when a component enters one of its ``on_levels``. Every call and its
outcome is recorded in the risk store. A cooldown per hook and component, measured in
scoring time, stops repeats, and an idempotency key stops a re-run from calling twice.
"""

from __future__ import annotations

from predictor.hooks.dispatch import dispatch_hooks
from predictor.hooks.payload import SCHEMA_VERSION, HookEvent, level_entries
from predictor.hooks.senders import SendResult, run_command, send_webhook
from predictor.store import HookCallRecord

__all__ = [
    "SCHEMA_VERSION",
    "HookCallRecord",
    "HookEvent",
    "SendResult",
    "dispatch_hooks",
    "level_entries",
    "run_command",
    "send_webhook",
]
