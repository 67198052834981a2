"""Anomaly detectors: a robust z-score and an ensemble fusing PyOD detectors with it.

Every score in this package points one way: higher means more anomalous (worse).
"""

from __future__ import annotations

from predictor.detect._members import MEMBER_NAMES
from predictor.detect.ensemble import DEFAULT_MEMBER_WEIGHTS, DEFAULT_MEMBERS, AnomalyEnsemble
from predictor.detect.scale import smooth_surprise, surprise_to_score
from predictor.detect.statistical import RobustZScore
from predictor.exceptions import DegenerateMemberWarning

__all__ = [
    "DEFAULT_MEMBERS",
    "DEFAULT_MEMBER_WEIGHTS",
    "MEMBER_NAMES",
    "AnomalyEnsemble",
    "DegenerateMemberWarning",
    "RobustZScore",
    "smooth_surprise",
    "surprise_to_score",
]
