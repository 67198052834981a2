"""Evaluation of anomaly scores against labeled telemetry."""

from __future__ import annotations

from predictor.evaluate.nab import (
    PROFILES,
    CorpusScore,
    CostProfile,
    Detection,
    FileScore,
    load_results,
    load_windows,
    probation_length,
    scaled_sigmoid,
    score_corpus,
    score_file,
)

__all__ = [
    "PROFILES",
    "CorpusScore",
    "CostProfile",
    "Detection",
    "FileScore",
    "load_results",
    "load_windows",
    "probation_length",
    "scaled_sigmoid",
    "score_corpus",
    "score_file",
]
