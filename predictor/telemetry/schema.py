"""The long telemetry row, the one shape every reader produces and the store keeps."""

from __future__ import annotations

import re

import pandas as pd

TIMESTAMP = "timestamp"
COMPONENT = "component"
METRIC = "metric"
VALUE = "value"
LONG_COLUMNS = (TIMESTAMP, COMPONENT, METRIC, VALUE)

# Names become Parquet partition folders and appear in URLs, so they are limited to
# characters that are safe in both: no path separators, no control characters.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,127}$")


def empty_long_frame() -> pd.DataFrame:
    """Return an empty frame with the long telemetry columns and dtypes."""
    return pd.DataFrame(
        {
            TIMESTAMP: pd.Series([], dtype="datetime64[ns, UTC]"),
            COMPONENT: pd.Series([], dtype=object),
            METRIC: pd.Series([], dtype=object),
            VALUE: pd.Series([], dtype="float64"),
        }
    )


def is_valid_name(name: object) -> bool:
    """Return whether ``name`` is usable as a component or metric name."""
    return isinstance(name, str) and NAME_PATTERN.match(name) is not None
