"""Map labeled Prometheus series to long telemetry rows.

Both Prometheus readers (the HTTP API and text-format files) produce series: a label set
and samples ``(time, value text)``. This module turns them into the long rows of
:class:`~predictor.telemetry.readers.RawTelemetry`, rejecting what cannot be stored with
a reason instead of dropping it.
"""

from __future__ import annotations

import logging
import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from predictor.exceptions import ConfigError
from predictor.telemetry.readers import (
    RAW_VALUE,
    REASON,
    REASON_NON_NUMERIC,
    SOURCE_ROW,
    RawTelemetry,
    empty_raw_rows,
    empty_rejected_rows,
)
from predictor.telemetry.schema import COMPONENT, METRIC, TIMESTAMP, VALUE

logger = logging.getLogger(__name__)

REASON_NAN_SAMPLE = "sample value is NaN (no data, or 0/0 inside the query)"
REASON_INF_SAMPLE = "sample value is +Inf or -Inf (for example a division by zero in the query)"
REASON_MISSING_LABEL = "series lacks a label that the component or metric mapping needs"
REASON_COMPONENT_REGEX = "component label value does not match component_regex"
REASON_NO_PREVIOUS_SAMPLE = "first sample of a raw counter series: no earlier sample for a rate"
REASON_NATIVE_HISTOGRAM = (
    "native histogram sample; query a quantile with histogram_quantile() instead"
)

# Value text that stands for a native histogram sample, which has no single value.
NATIVE_HISTOGRAM_TEXT = "<native histogram>"
SPECIAL_VALUES = {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}


@dataclass(frozen=True)
class SeriesMapping:
    """The rule that maps the labels of one series to its component and metric name.

    Parameters
    ----------
    metric : str
        A :meth:`str.format` template over label names, such as ``"{__name__}"``.
    component : str or None, default=None
        A fixed component name; when set, the labels are not consulted for it.
    component_label : str, default="instance"
        The label whose value is the component.
    component_regex : str or None, default=None
        A regular expression with one group; the group's match in the label value is
        the component, for example ``"([^:]+)"`` for a host without its port.
    """

    metric: str
    component: str | None = None
    component_label: str = "instance"
    component_regex: str | None = None
    _fields: tuple[str, ...] = field(init=False, repr=False, compare=False, default=())
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        try:
            fields = tuple(name for _, name, _, _ in string.Formatter().parse(self.metric) if name)
        except ValueError as error:
            raise ConfigError(f"metric template {self.metric!r}: {error}") from None
        object.__setattr__(self, "_fields", fields)
        if self.component_regex is not None:
            try:
                pattern = re.compile(self.component_regex)
            except re.error as error:
                raise ConfigError(f"component_regex {self.component_regex!r}: {error}") from None
            if pattern.groups != 1:
                raise ConfigError(
                    f"component_regex {self.component_regex!r}: expected exactly one "
                    f"group, got {pattern.groups}"
                )
            object.__setattr__(self, "_pattern", pattern)

    def map(self, labels: Mapping[str, str]) -> tuple[str, str, str | None]:
        """Return ``(component, metric, reason)``; ``reason`` is None when mapped.

        An unmappable series gets its label set as the component, so the quarantine
        file shows which series it was.
        """
        missing = [name for name in self._fields if name not in labels]
        if self.component is None and self.component_label not in labels:
            missing.append(self.component_label)
        if missing:
            return format_labels(labels), self.metric, f"{REASON_MISSING_LABEL}: {missing}"

        metric = self.metric.format_map(dict(labels))
        if self.component is not None:
            return self.component, metric, None
        component = labels[self.component_label]
        if self._pattern is not None:
            match = self._pattern.search(component)
            if match is None or not match.group(1):
                return format_labels(labels), metric, REASON_COMPONENT_REGEX
            component = match.group(1)
        return component, metric, None


@dataclass
class Series:
    """Samples of one labeled series in time order: nanosecond times and value texts."""

    labels: dict[str, str]
    times_ns: list[int] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    source_rows: list[int] = field(default_factory=list)


def format_labels(labels: Mapping[str, str]) -> str:
    """Write a label set the way PromQL does: ``name{a="1", b="2"}``."""
    name = labels.get("__name__", "")
    rest = ", ".join(
        f'{key}="{value}"' for key, value in sorted(labels.items()) if key != "__name__"
    )
    return f"{name}{{{rest}}}"


def parse_sample_value(text: str) -> float:
    """Parse a Prometheus sample value, including ``NaN``, ``+Inf`` and ``-Inf``."""
    special = SPECIAL_VALUES.get(text)
    if special is not None:
        return special
    return float(text)


def counter_rates(series: Series, start_ns: int) -> tuple[Series, list[str | None]]:
    """Turn raw counter samples into per-second rates with resets corrected.

    The rate at sample i is ``(v[i] - v[i-1]) / (t[i] - t[i-1])``; when the counter
    dropped (a process restart), the increase is ``v[i]`` itself, the rule PromQL's
    ``rate()`` uses. Samples before ``start_ns`` only serve as the previous sample.

    Returns
    -------
    rates : Series
        One sample per input sample at or after ``start_ns``.
    reasons : list of str or None
        ``REASON_NO_PREVIOUS_SAMPLE`` for the first sample of the series, else None.
    """
    rates = Series(labels=series.labels)
    reasons: list[str | None] = []
    previous: tuple[int, float] | None = None
    for time_ns, text, row in zip(series.times_ns, series.values, series.source_rows, strict=True):
        value = _float_or_nan(text)
        finite = math.isfinite(value)
        if time_ns >= start_ns:
            rates.times_ns.append(time_ns)
            rates.source_rows.append(row)
            if not finite:
                # The text (NaN, +Inf, not a number) gets its own reason later.
                rates.values.append(text)
                reasons.append(None)
            elif previous is None:
                rates.values.append(text)
                reasons.append(REASON_NO_PREVIOUS_SAMPLE)
            else:
                increase = value - previous[1] if value >= previous[1] else value
                seconds = (time_ns - previous[0]) / 1e9
                rates.values.append(repr(increase / seconds))
                reasons.append(None)
        if finite:
            previous = (time_ns, value)
    return rates, reasons


def series_to_raw(
    batches: Iterable[tuple[Series, SeriesMapping, list[str | None] | None]],
) -> RawTelemetry:
    """Build long rows from series; reject unmappable series and non-finite samples.

    Parameters
    ----------
    batches : iterable of (Series, SeriesMapping, reasons or None)
        Each series with its mapping and, optionally, a reason per sample that was
        already decided (such as :data:`REASON_NO_PREVIOUS_SAMPLE`).

    Returns
    -------
    RawTelemetry
    """
    frames = []
    for series, mapping, preset in batches:
        if not series.times_ns:
            continue
        component, metric, series_reason = mapping.map(series.labels)
        values = np.array([_float_or_nan(text) for text in series.values], dtype="float64")
        reasons = np.array(preset if preset is not None else [None] * len(values), dtype=object)
        text = np.array(series.values, dtype=object)
        undecided = pd.isna(reasons)
        reasons[undecided & (text == "NaN")] = REASON_NAN_SAMPLE
        reasons[undecided & np.isin(text, ["+Inf", "-Inf"])] = REASON_INF_SAMPLE
        reasons[undecided & (text == NATIVE_HISTOGRAM_TEXT)] = REASON_NATIVE_HISTOGRAM
        reasons[undecided & ~np.isfinite(values) & pd.isna(reasons)] = REASON_NON_NUMERIC
        if series_reason is not None:
            reasons[:] = series_reason
        frames.append(
            pd.DataFrame(
                {
                    TIMESTAMP: pd.to_datetime(
                        np.asarray(series.times_ns, dtype=np.int64), unit="ns", utc=True
                    ),
                    COMPONENT: component,
                    METRIC: metric,
                    VALUE: values,
                    SOURCE_ROW: np.asarray(series.source_rows, dtype=np.int64),
                    REASON: reasons,
                    RAW_VALUE: text,
                }
            )
        )
    if not frames:
        return RawTelemetry(empty_raw_rows(), empty_rejected_rows(), 0)

    long = pd.concat(frames, ignore_index=True).sort_values(SOURCE_ROW, kind="stable")
    long[TIMESTAMP] = long[TIMESTAMP].astype("datetime64[ns, UTC]")
    long[COMPONENT] = long[COMPONENT].astype(object)
    long[METRIC] = long[METRIC].astype(object)
    rejected_mask = ~pd.isna(long[REASON]).to_numpy()
    rows = long.loc[~rejected_mask, list(empty_raw_rows().columns)].reset_index(drop=True)
    rejected = long.loc[rejected_mask].reset_index(drop=True)
    return RawTelemetry(rows=rows, rejected=rejected, rows_read=len(long))


def _float_or_nan(text: str) -> float:
    try:
        return parse_sample_value(text)
    except ValueError:
        return math.nan
