"""predictor: predictive failure detection for model-serving infrastructure."""

from __future__ import annotations

__version__ = "0.1.0"
