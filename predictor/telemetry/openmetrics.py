"""Read OpenMetrics and Prometheus text-format files, such as exports and test fixtures.

A file that ends with ``# EOF`` is parsed as OpenMetrics (timestamps in seconds),
anything else as the Prometheus text format (timestamps in milliseconds), both with
prometheus-client's parsers. Series map to components and metrics as in the Prometheus
source: ``component_label``, ``component_regex`` and ``metric_template`` of the source.
A sample without a timestamp cannot be placed in time and is quarantined.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO, cast

from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_fd_to_metric_families

from predictor.config import SourceConfig
from predictor.exceptions import InputError
from predictor.telemetry.readers import RawTelemetry
from predictor.telemetry.series import Series, SeriesMapping, series_to_raw

logger = logging.getLogger(__name__)

REASON_NO_TIMESTAMP = "sample has no timestamp"
GZIP_MAGIC = b"\x1f\x8b"
NS_PER_MS = 1_000_000


def read_openmetrics(source: SourceConfig, path: Path) -> RawTelemetry:
    """Read one text-format file into long rows.

    Parameters
    ----------
    source : SourceConfig
        A source with ``format = "openmetrics"``.
    path : Path
        The file, plain or gzip-compressed.

    Returns
    -------
    RawTelemetry
        ``source_row`` is the file line of each sample.

    Raises
    ------
    InputError
        If the file is not valid text in ``source.encoding`` or a line is not valid
        in its format; the message names the line.
    """
    lines = _read_lines(source, path)
    is_openmetrics = any(line.strip() == "# EOF" for line in lines[-3:])
    sample_lines = [
        number
        for number, line in enumerate(lines, start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]

    position = {"line": 0}

    def tracked() -> Iterator[str]:
        for number, line in enumerate(lines, start=1):
            position["line"] = number
            yield line

    parse = (
        openmetrics_parser.text_fd_to_metric_families
        if is_openmetrics
        else (text_fd_to_metric_families)
    )
    try:
        # Both parsers only iterate over their argument, so a line iterator serves as a file.
        lines_io = cast("TextIO", tracked())
        samples = [sample for family in parse(lines_io) for sample in family.samples]
    except ValueError as error:
        line = position["line"]
        text = lines[line - 1].rstrip("\n") if line else ""
        layout = "OpenMetrics" if is_openmetrics else "Prometheus text format"
        detail = f" ({error})" if str(error) else ""
        raise InputError(
            f"not a valid {layout} line: {text[:200]!r}{detail}", path=str(path), row=line
        ) from None

    mapping = SeriesMapping(
        metric=source.metric_template,
        component=source.component,
        component_label=source.component_label,
        component_regex=source.component_regex,
    )
    # Both parsers keep the file order of samples, so sample i is on sample line i.
    rows = sample_lines if len(sample_lines) == len(samples) else list(range(1, len(samples) + 1))
    batches: list[tuple[Series, SeriesMapping, list[str | None] | None]] = []
    missing_time = []
    for sample, row in zip(samples, rows, strict=True):
        labels = {"__name__": sample.name, **sample.labels}
        series = Series(labels=labels)
        text = _value_text(sample.value)
        if sample.timestamp is None:
            series.times_ns.append(0)
            missing_time.append(row)
        else:
            series.times_ns.append(_timestamp_ns(sample.timestamp))
        series.values.append(text)
        series.source_rows.append(row)
        reasons: list[str | None] | None = (
            [REASON_NO_TIMESTAMP] if sample.timestamp is None else None
        )
        batches.append((series, mapping, reasons))

    raw = series_to_raw(batches)
    if missing_time:
        raw.rejected.loc[raw.rejected["source_row"].isin(missing_time), "timestamp"] = None
        logger.warning(
            "source %s: %d samples in %s have no timestamp and are quarantined (first on line %d)",
            source.name,
            len(missing_time),
            path,
            missing_time[0],
        )
    return raw


def _read_lines(source: SourceConfig, path: Path) -> list[str]:
    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise InputError(f"cannot decompress gzip data: {error}", path=str(path)) from None
    try:
        text = data.decode(source.encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(
            f"byte {data[error.start : error.start + 1]!r} is not valid {source.encoding}; "
            "set encoding in the source config to the file's encoding",
            path=str(path),
            row=line,
        ) from None
    return text.splitlines(keepends=True)


def _value_text(value: float) -> str:
    if value != value:
        return "NaN"
    if value == float("inf"):
        return "+Inf"
    if value == float("-inf"):
        return "-Inf"
    return repr(float(value))


def _timestamp_ns(timestamp: object) -> int:
    """Convert a parsed timestamp to nanoseconds since the epoch.

    The OpenMetrics parser returns a ``Timestamp`` with seconds and nanoseconds; the text
    parser divides the millisecond integer by 1000 and returns a float of seconds.
    """
    seconds = getattr(timestamp, "sec", None)
    if seconds is not None:
        return int(seconds) * 1_000_000_000 + int(getattr(timestamp, "nsec", 0))
    return round(float(timestamp) * 1000) * NS_PER_MS  # type: ignore[arg-type]
