"""Telemetry: read files into long UTC rows, validate them, and keep them in Parquet.

The public names are re-exported here; see :mod:`predictor.telemetry.readers`,
:mod:`~predictor.telemetry.validate`, :mod:`~predictor.telemetry.store`,
:mod:`~predictor.telemetry.ingest` and :mod:`~predictor.telemetry.labels`.
"""

from __future__ import annotations

from predictor.telemetry.ingest import (
    AccountingError,
    IngestSummary,
    ingest_source,
    split_time,
)
from predictor.telemetry.labels import LabeledFailure, labeled_component, read_labels
from predictor.telemetry.readers import RawTelemetry, matrix_timestamps, read_source
from predictor.telemetry.schema import (
    COMPONENT,
    LONG_COLUMNS,
    METRIC,
    TIMESTAMP,
    VALUE,
    empty_long_frame,
    is_valid_name,
)
from predictor.telemetry.store import AppendResult, TelemetryStore
from predictor.telemetry.validate import validate

__all__ = [
    "COMPONENT",
    "LONG_COLUMNS",
    "METRIC",
    "TIMESTAMP",
    "VALUE",
    "AccountingError",
    "AppendResult",
    "IngestSummary",
    "LabeledFailure",
    "RawTelemetry",
    "TelemetryStore",
    "empty_long_frame",
    "ingest_source",
    "is_valid_name",
    "labeled_component",
    "matrix_timestamps",
    "read_labels",
    "read_source",
    "split_time",
    "validate",
]
