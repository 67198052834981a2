"""Prometheus exposition of the risk store, read at scrape time.

A custom collector queries the latest score of every component on each scrape, so the
exported values are never older than the store, and it is registered in a registry
that the app owns instead of prometheus-client's global default registry. A failed
query sets ``predictor_store_up`` to 0 and leaves the other families out, so a
scrape does not fail because the store is down.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from predictor.api.queries import STORE_ERRORS, RiskReader
from predictor.hooks.breaker import BreakerState
from predictor.scoring_runs import summarize_scoring_runs

logger = logging.getLogger(__name__)

LEVELS = ("normal", "elevated", "high", "critical", "unknown")
BREAKER_STATES = ("closed", "open", "half_open")


class RiskStoreCollector(Collector):
    """Collect per-component risk gauges and scoring-run figures from the risk store.

    Parameters
    ----------
    reader : callable
        Returns the :class:`RiskReader` of the open store, or raises
        ``StoreUnavailableError`` when the store cannot be opened.
    clock : callable, default=time.time
        Current time in seconds since the epoch, for score ages.
    breakers : callable or None, default=None
        Returns the circuit breakers of the configured hook targets.
    """

    def __init__(
        self,
        reader: Callable[[], RiskReader],
        clock: Callable[[], float] = time.time,
        *,
        breakers: Callable[[], list[BreakerState]] | None = None,
    ) -> None:
        self._reader = reader
        self._clock = clock
        self._breakers = breakers

    def describe(self) -> list[Metric]:
        # An empty description keeps registration from querying the store.
        return []

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily(
            "predictor_store_up", "1 when the last scrape could read the risk store, else 0."
        )
        try:
            reader = self._reader()
            latest = reader.latest_all()
            runs = summarize_scoring_runs(reader.engine)
            breakers = self._breakers() if self._breakers is not None else []
        except STORE_ERRORS as error:
            # The error is the store being down, not a bug, so one line without a traceback.
            logger.error("metrics: reading the risk store failed: %s", error)  # noqa: TRY400
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        yield from self._score_families(latest)
        if runs is not None:
            yield from _run_families(runs)
        if breakers:
            yield _breaker_family(breakers)
        duration = GaugeMetricFamily(
            "predictor_metrics_collect_seconds", "Time spent reading the store for this scrape."
        )
        duration.add_metric([], time.perf_counter() - started)
        yield duration

    def _score_families(self, latest: list[dict]) -> Iterator[Metric]:
        labels = ["component", "group"]
        risk = GaugeMetricFamily(
            "predictor_failure_risk",
            "Latest failure-risk of the component in [0, 1]; see predictor_risk_calibrated.",
            labels=labels,
        )
        calibrated = GaugeMetricFamily(
            "predictor_risk_calibrated",
            "1 when predictor_failure_risk is a calibrated probability of failure, else 0.",
            labels=labels,
        )
        level = GaugeMetricFamily(
            "predictor_risk_level",
            "1 for the component's current level, 0 for the other levels.",
            labels=[*labels, "level"],
        )
        time_to_threshold = GaugeMetricFamily(
            "predictor_time_to_threshold_seconds",
            "Expected seconds until a metric crosses its threshold; absent when none is forecast.",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "predictor_score_age_seconds",
            "Seconds since the scoring time of the component's latest score.",
            labels=labels,
        )
        now = self._clock()
        for row in latest:
            values = [row["component"], row["group_name"] or ""]
            if row["risk"] is not None:
                risk.add_metric(values, row["risk"])
            calibrated.add_metric(values, 1.0 if row["calibrated"] else 0.0)
            for name in LEVELS:
                level.add_metric([*values, name], 1.0 if row["level"] == name else 0.0)
            if row["time_to_threshold_seconds"] is not None:
                time_to_threshold.add_metric(values, row["time_to_threshold_seconds"])
            scored_at: dt.datetime = row["scored_at"]
            age.add_metric(values, max(0.0, now - scored_at.timestamp()))
        yield from (risk, calibrated, level, time_to_threshold, age)


def _run_families(runs) -> Iterator[Metric]:  # type: ignore[no-untyped-def]
    total = CounterMetricFamily(
        "predictor_scoring_runs", "Scoring runs recorded in the risk store."
    )
    total.add_metric([], runs.runs)
    failed = CounterMetricFamily(
        "predictor_scoring_runs_failed",
        "Scoring runs that stopped with an error before finishing.",
    )
    failed.add_metric([], runs.failed_runs)
    component_errors = CounterMetricFamily(
        "predictor_scoring_component_errors",
        "Component scorings that failed, summed over all recorded runs.",
    )
    component_errors.add_metric([], runs.failed_components_total)
    duration = GaugeMetricFamily(
        "predictor_scoring_run_duration_seconds", "Wall-clock duration of the latest run."
    )
    duration.add_metric([], runs.last_duration_seconds)
    last_errors = GaugeMetricFamily(
        "predictor_scoring_run_failed_components",
        "Components whose scoring failed in the latest run.",
    )
    last_errors.add_metric([], runs.last_components_failed)
    finished = GaugeMetricFamily(
        "predictor_scoring_run_last_finished_timestamp_seconds",
        "When the latest run finished, in seconds since the epoch.",
    )
    finished.add_metric([], runs.last_finished_at.timestamp())
    yield from (total, failed, component_errors, duration, last_errors, finished)


def build_registry(
    reader: Callable[[], RiskReader],
    breakers: Callable[[], list[BreakerState]] | None = None,
) -> CollectorRegistry:
    """Return a new registry holding only the risk-store collector.

    ``breakers`` returns the circuit breakers of the configured hook targets; None leaves
    the breaker gauge out.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RiskStoreCollector(reader, breakers=breakers))
    return registry


def _breaker_family(states: list[BreakerState]) -> Metric:
    family = GaugeMetricFamily(
        "predictor_hook_breaker_state",
        "1 for the circuit-breaker state of the hook target, 0 for the other states.",
        labels=["target", "state"],
    )
    for breaker in states:
        for name in BREAKER_STATES:
            family.add_metric([breaker.target, name], 1.0 if breaker.state == name else 0.0)
    return family
