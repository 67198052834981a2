"""Failure-risk: fusion of anomaly and forecast signals, and levels with hysteresis."""

from __future__ import annotations

from predictor.risk.fusion import fuse_risk
from predictor.risk.levels import LEVELS, UNKNOWN, LevelState, assign_levels, transitions

__all__ = ["LEVELS", "UNKNOWN", "LevelState", "assign_levels", "fuse_risk", "transitions"]
