"""Evaluation of anomaly scores against labeled telemetry."""
