"""HTTP API that publishes the risk store to load balancers, controllers and Prometheus."""

from __future__ import annotations

from predictor.api.app import create_app
from predictor.api.readiness import champion_model_version

__all__ = ["champion_model_version", "create_app"]
