"""Read telemetry from a Prometheus server through its HTTP API.

Each configured PromQL query is evaluated with ``/api/v1/query_range`` at every multiple
of ``step_seconds`` (since the Unix epoch) between the start and the end of the range.
Two ingests of overlapping ranges therefore request the same evaluation times, and the
store skips the repeats. The range is split into requests of at most ``max_points_per_request``
points per series, below the server's limit of 11,000.

What comes back is mapped to long rows by :mod:`predictor.telemetry.series`:

- ``NaN``, ``+Inf`` and ``-Inf`` samples are quarantined with their reason;
- a time where a series has no sample (a gap, or a series marked stale) has no row, and
  scoring marks the component ``unknown`` when the gap lasts;
- with ``raw_counter = true`` a counter becomes its reset-corrected per-second rate;
- series whose labels change over time (a new pod, a new exporter version) map to the
  same component and metric as long as the mapping labels stay the same.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
import requests

from predictor.config import PrometheusQueryConfig, SourceConfig
from predictor.exceptions import ConfigError, PredictorUserError
from predictor.telemetry.readers import RawTelemetry
from predictor.telemetry.series import (
    NATIVE_HISTOGRAM_TEXT,
    Series,
    SeriesMapping,
    counter_rates,
    series_to_raw,
)

logger = logging.getLogger(__name__)

QUERY_RANGE_PATH = "/api/v1/query_range"
# Overload and gateway errors may pass on another attempt, other HTTP errors will not.
RETRY_STATUS = frozenset({429, 502, 503, 504})
NS_PER_MS = 1_000_000


class PrometheusError(PredictorUserError, RuntimeError):
    """A Prometheus query failed: unreachable server, HTTP error or PromQL error."""


def read_prometheus(
    source: SourceConfig,
    now: pd.Timestamp | None = None,
    session: requests.Session | None = None,
) -> RawTelemetry:
    """Evaluate every query of a Prometheus source over its range and map the series.

    Parameters
    ----------
    source : SourceConfig
        A source with ``format = "prometheus"``.
    now : Timestamp or None, default=None
        The end of the range when ``source.end`` is unset; None uses the clock.
    session : requests.Session or None, default=None
        The HTTP session; None opens one for this call.

    Returns
    -------
    RawTelemetry
        Rows in the order received; ``source_row`` numbers the samples from 1.

    Raises
    ------
    PrometheusError
        If the server cannot be reached after the retries, returns an HTTP error,
        or rejects a query; the message names the query and the server.
    ConfigError
        If ``start``, ``end`` or a mapping option is invalid.
    """
    start_ns, end_ns, step_ns = evaluation_range(source, now)
    own_session = session is None
    session = session or requests.Session()
    counter = iter(range(1, 2**62))
    batches: list[tuple[Series, SeriesMapping, list[str | None] | None]] = []
    try:
        for query in source.queries:
            mapping = SeriesMapping(
                metric=query.metric,
                component=query.component,
                component_label=query.component_label or source.component_label,
                component_regex=query.component_regex or source.component_regex,
            )
            # A raw counter needs one sample before the range to give the first rate.
            query_start = start_ns - step_ns if query.raw_counter else start_ns
            series = _query_all_chunks(
                source, session, query, query_start, end_ns, step_ns, counter
            )
            for labeled in series:
                if query.raw_counter:
                    rates, reasons = counter_rates(labeled, start_ns)
                    batches.append((rates, mapping, reasons))
                else:
                    batches.append((labeled, mapping, None))
    finally:
        if own_session:
            session.close()

    raw = series_to_raw(batches)
    logger.info(
        "prometheus source %s at %s: %d queries, %d series, %d samples, %d rejected",
        source.name,
        source.url,
        len(source.queries),
        len(batches),
        raw.rows_read,
        len(raw.rejected),
    )
    return raw


def evaluation_range(
    source: SourceConfig, now: pd.Timestamp | None = None
) -> tuple[int, int, int]:
    """Return the first and last evaluation time and the step, in nanoseconds.

    Both ends are moved inwards to multiples of the step since the Unix epoch.
    """
    step_ns = round(float(source.step_seconds or 0) * 1e9)
    end = _config_time(source, "end", source.end) if source.end else None
    if end is None:
        end = (now if now is not None else pd.Timestamp.now(tz="UTC")).tz_convert("UTC")
    start = _config_time(source, "start", source.start) if source.start else None
    if start is None:
        start = end - pd.Timedelta(minutes=source.lookback_minutes)
    if start > end:
        raise ConfigError(
            f"source {source.name!r}: start {start.isoformat()!r} is after end {end.isoformat()!r}"
        )
    start_ns = -(-start.value // step_ns) * step_ns
    end_ns = end.value // step_ns * step_ns
    return start_ns, end_ns, step_ns


def chunk_ranges(
    start_ns: int, end_ns: int, step_ns: int, max_points: int
) -> Iterator[tuple[int, int]]:
    """Yield ``(start, end)`` of consecutive requests with at most ``max_points`` each.

    The chunks share no evaluation time, so no sample is fetched twice.

    Examples
    --------
    >>> list(chunk_ranges(0, 9, 1, 4))
    [(0, 3), (4, 7), (8, 9)]
    """
    chunk_start = start_ns
    while chunk_start <= end_ns:
        chunk_end = min(chunk_start + (max_points - 1) * step_ns, end_ns)
        yield chunk_start, chunk_end
        chunk_start = chunk_end + step_ns


def _config_time(source: SourceConfig, key: str, text: str) -> pd.Timestamp:
    try:
        value = pd.Timestamp(text)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise ConfigError(
            f"source {source.name!r}: {key} must be an ISO 8601 time with a UTC offset, "
            f"such as '2026-01-01T00:00:00Z', got {text!r}"
        )
    return value.tz_convert("UTC")


def _query_all_chunks(
    source: SourceConfig,
    session: requests.Session,
    query: PrometheusQueryConfig,
    start_ns: int,
    end_ns: int,
    step_ns: int,
    counter: Iterator[int],
) -> list[Series]:
    """Run one query chunk by chunk; join each label set's samples across chunks."""
    by_labels: dict[tuple[tuple[str, str], ...], Series] = {}
    n_chunks = 0
    for chunk_start, chunk_end in chunk_ranges(
        start_ns, end_ns, step_ns, source.max_points_per_request
    ):
        n_chunks += 1
        result = query_range(source, session, query.query, chunk_start, chunk_end, step_ns)
        for item in result:
            labels = {str(k): str(v) for k, v in item.get("metric", {}).items()}
            key = tuple(sorted(labels.items()))
            series = by_labels.setdefault(key, Series(labels=labels))
            samples = [(point, value) for point, value in item.get("values", [])]
            # Native histograms come as objects that are not single numbers.
            samples += [(point, None) for point, _ in item.get("histograms", [])]
            for point, value in samples:
                series.times_ns.append(round(float(point) * 1000) * NS_PER_MS)
                series.values.append(NATIVE_HISTOGRAM_TEXT if value is None else str(value))
                series.source_rows.append(next(counter))
    logger.debug(
        "prometheus source %s: query %r returned %d series in %d requests",
        source.name,
        query.query,
        len(by_labels),
        n_chunks,
    )
    return list(by_labels.values())


def query_range(
    source: SourceConfig,
    session: requests.Session,
    query: str,
    start_ns: int,
    end_ns: int,
    step_ns: int,
) -> list[dict[str, Any]]:
    """Run one ``query_range`` request with retries; return the ``result`` list.

    Connection errors, timeouts and HTTP 429, 502, 503 and 504 are retried up to
    ``source.max_retries`` times, waiting ``retry_backoff_seconds * 2 ** attempt``.
    """
    url = f"{str(source.url).rstrip('/')}{QUERY_RANGE_PATH}"
    form = {
        "query": query,
        "start": _seconds(start_ns),
        "end": _seconds(end_ns),
        "step": _seconds(step_ns),
        "timeout": f"{source.timeout_seconds:g}s",
    }
    where = f"source {source.name!r}: query {query!r} on {source.url}"
    for attempt in range(source.max_retries + 1):
        retry_reason = None
        try:
            response = session.post(
                url, data=form, timeout=source.timeout_seconds, headers=dict(source.headers)
            )
        except requests.Timeout:
            retry_reason = f"no response within timeout_seconds={source.timeout_seconds:g}"
        except requests.ConnectionError as error:
            retry_reason = f"connection failed: {error}"
        else:
            if response.status_code not in RETRY_STATUS:
                return _result(response, where)
            retry_reason = f"HTTP {response.status_code}: {_body_error(response)}"

        if attempt == source.max_retries:
            raise PrometheusError(f"{where} failed after {attempt + 1} attempts: {retry_reason}")
        wait_seconds = source.retry_backoff_seconds * 2**attempt
        logger.warning(
            "%s: attempt %d of %d failed (%s); retrying in %.1f s",
            where,
            attempt + 1,
            source.max_retries + 1,
            retry_reason,
            wait_seconds,
        )
        time.sleep(wait_seconds)
    raise AssertionError("unreachable")  # pragma: no cover


def _result(response: requests.Response, where: str) -> list[dict[str, Any]]:
    """Check one response and return its series; raise on any HTTP or PromQL error."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise PrometheusError(
            f"{where} failed: HTTP {response.status_code} with a body that is not a "
            f"Prometheus API response: {response.text[:200]!r}"
        )
    if payload.get("status") != "success":
        raise PrometheusError(
            f"{where} failed: HTTP {response.status_code} {payload.get('errorType')}: "
            f"{payload.get('error')}"
        )
    for warning in payload.get("warnings") or []:
        logger.warning("%s: the server returned a warning: %s", where, warning)

    data = payload.get("data") or {}
    if data.get("resultType") != "matrix":
        raise PrometheusError(
            f"{where}: expected resultType 'matrix' from query_range, got "
            f"{data.get('resultType')!r}"
        )
    return list(data.get("result") or [])


def _body_error(response: requests.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return response.text[:200]


def _seconds(nanoseconds: int) -> str:
    """Format nanoseconds as decimal seconds at the server's millisecond resolution."""
    milliseconds = nanoseconds // NS_PER_MS
    return f"{milliseconds // 1000}.{milliseconds % 1000:03d}"
