"""Calibration of the published risk from stored scores and labeled failures.

A score row at time ``t`` is a positive example when a labeled failure starts or is
ongoing in ``[t, t + horizon)``: its ``failure_time`` is before ``t + horizon`` and its
``window_end`` is at or after ``t``. For row labels ``window_end`` is the last anomalous
row, and for NAB labels it is the end of the labeled anomaly window.

Only rows whose whole horizon ends by the cut-off are used, and only failures that start
by the cut-off, so a calibration fitted up to a time reads nothing that happened after
it. The fitted map is stored as JSON (plain numbers, no pickle) under ``PREDICTOR_HOME``
and applies to the components whose labels it was fitted on.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.calibration import (
    METHODS,
    OutOfTimeResult,
    ScoreCalibrator,
    brier_score,
)
from predictor.exceptions import InputError, PredictorUserError
from predictor.store import RiskStore
from predictor.telemetry import LabeledFailure

logger = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
#: Minimum number of positive score rows to fit a calibration on. With fewer, an isotonic
#: map rests on a handful of rows near one failure and mostly fits noise.
MIN_POSITIVE_ROWS = 30
#: Share of each component's rows, from its first, that the out-of-time check fits on.
OUT_OF_TIME_FIT_FRACTION = 0.5


@dataclass(frozen=True)
class RiskCalibration:
    """A fitted map from fused risk to the probability of a failure within the horizon.

    Attributes
    ----------
    calibrator : ScoreCalibrator
        The fitted map.
    horizon_minutes : float
        Horizon of the probability; scoring applies the map only with the same horizon.
    fitted_until : pandas.Timestamp
        Cut-off of the fit (UTC); no score or label after it was read.
    components : tuple of str
        Components with labels that the map was fitted on, and the only ones it applies to.
    n_rows, n_positive, n_failures : int
        Score rows, positive rows and labeled failures in the fit.
    out_of_time : dict or None
        Brier scores of the out-of-time check (fit on the first half of each component's
        rows, evaluate on the rest): ``brier``, ``brier_base_rate``, ``base_rate``,
        ``n_fit``, ``n_eval``. None when a half had no failure.
    run_id : str or None
        MLflow run that stores the calibration as an artifact.
    """

    calibrator: ScoreCalibrator
    horizon_minutes: float
    fitted_until: pd.Timestamp
    components: tuple[str, ...]
    n_rows: int
    n_positive: int
    n_failures: int
    out_of_time: dict[str, float] | None = None
    run_id: str | None = None

    def applies_to(self, component: str) -> bool:
        """Return whether scores of ``component`` are calibrated with this map."""
        return component in self.components

    def to_dict(self) -> dict[str, Any]:
        """Return the calibration as JSON-compatible plain values."""
        return {
            "calibrator": self.calibrator.to_dict(),
            "horizon_minutes": float(self.horizon_minutes),
            "fitted_until": self.fitted_until.isoformat(),
            "components": list(self.components),
            "n_rows": int(self.n_rows),
            "n_positive": int(self.n_positive),
            "n_failures": int(self.n_failures),
            "out_of_time": self.out_of_time,
            "run_id": self.run_id,
        }

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> RiskCalibration:
        """Rebuild a calibration from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            If a key is missing or contains a value of the wrong kind.
        """
        missing = [
            key
            for key in ("calibrator", "horizon_minutes", "fitted_until", "components")
            if key not in state
        ]
        if missing:
            raise ValueError(f"calibration state: missing keys {missing}")
        components = state["components"]
        if not isinstance(components, list) or not all(isinstance(c, str) for c in components):
            raise ValueError(
                f"calibration state, key 'components': expected a list of names, "
                f"got {components!r}"
            )
        horizon = state["horizon_minutes"]
        if isinstance(horizon, bool) or not isinstance(horizon, int | float) or horizon <= 0:
            raise ValueError(
                f"calibration state, key 'horizon_minutes': expected a positive number, "
                f"got {horizon!r}"
            )
        return cls(
            calibrator=ScoreCalibrator.from_dict(state["calibrator"]),
            horizon_minutes=float(horizon),
            fitted_until=_utc(state["fitted_until"], "fitted_until"),
            components=tuple(components),
            n_rows=int(state.get("n_rows", 0)),
            n_positive=int(state.get("n_positive", 0)),
            n_failures=int(state.get("n_failures", 0)),
            out_of_time=state.get("out_of_time"),
            run_id=state.get("run_id"),
        )


def _utc(value: Any, key: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"calibration state, key {key!r}: expected an ISO 8601 time, got {value!r}"
        ) from None
    if stamp is pd.NaT or stamp.tzinfo is None:
        raise ValueError(
            f"calibration state, key {key!r}: expected a time with a UTC offset, got {value!r}"
        )
    return stamp.tz_convert("UTC")


def failure_targets(
    scored_at: pd.Series | pd.DatetimeIndex,
    failures: Sequence[LabeledFailure],
    horizon: pd.Timedelta,
) -> np.ndarray:
    """Return 1 for each scoring time with a failure starting or ongoing within the horizon.

    Parameters
    ----------
    scored_at : pandas.Series or DatetimeIndex of tz-aware times
        Scoring times of one component.
    failures : sequence of LabeledFailure
        That component's labeled failures.
    horizon : pandas.Timedelta
        Length of the horizon.

    Returns
    -------
    ndarray of int8
        ``1`` where some failure has ``failure_time < t + horizon`` and
        ``window_end >= t``.
    """
    times = pd.DatetimeIndex(scored_at).tz_convert("UTC")
    target = np.zeros(len(times), dtype=np.int8)
    for failure in failures:
        hit = (times > failure.failure_time - horizon) & (times <= failure.window_end)
        target[np.asarray(hit)] = 1
    return target


def labeled_rows(
    scores: pd.DataFrame,
    failures: Sequence[LabeledFailure],
    horizon: pd.Timedelta,
    cut: pd.Timestamp,
) -> pd.DataFrame:
    """Return one component's scores whose target is known at ``cut``, with the target.

    Rows are kept when their horizon ends by ``cut`` and their uncalibrated risk is known;
    failures that start after ``cut`` are ignored. The result has columns ``scored_at``,
    ``raw_risk`` and ``target``.
    """
    raw = scores["raw_risk"].where(scores["raw_risk"].notna(), scores["risk"])
    # A calibrated row without raw_risk has lost its uncalibrated value; it cannot be used.
    raw = raw.where(scores["raw_risk"].notna() | ~scores["calibrated"].astype(bool))
    frame = pd.DataFrame({"scored_at": scores["scored_at"], "raw_risk": raw})
    frame = frame[(frame["scored_at"] + horizon <= cut) & frame["raw_risk"].notna()]
    known = [failure for failure in failures if failure.failure_time <= cut]
    target = failure_targets(frame["scored_at"], known, horizon)
    return frame.assign(target=target).reset_index(drop=True)


def fit_risk_calibration(
    store: RiskStore,
    failures: Mapping[str, Sequence[LabeledFailure]],
    until: pd.Timestamp,
    horizon_minutes: float,
    method: str = "isotonic",
) -> RiskCalibration:
    """Fit the map from stored fused risk to the probability of a failure within the horizon.

    Parameters
    ----------
    store : RiskStore
        Stored scores; their ``raw_risk`` (or ``risk`` when uncalibrated) is the input.
    failures : mapping of str to sequence of LabeledFailure
        Labeled failures per component, for every component with labels (an empty
        sequence for a labeled component without failures).
    until : pandas.Timestamp
        Cut-off: scores whose horizon ends after it and failures after it are not read.
    horizon_minutes : float
        Horizon of the probability.
    method : {"isotonic", "platt"}, default="isotonic"

    Returns
    -------
    RiskCalibration

    Raises
    ------
    PredictorUserError
        If no labeled failure starts by ``until``, or the labeled score rows hold fewer
        than ``MIN_POSITIVE_ROWS`` positive rows.
    """
    if method not in METHODS:
        raise PredictorUserError(f"method: expected one of {list(METHODS)}, got {method!r}")
    horizon = pd.Timedelta(minutes=horizon_minutes)
    known = {
        component: [failure for failure in items if failure.failure_time <= until]
        for component, items in failures.items()
    }
    n_failures = sum(len(items) for items in known.values())
    if n_failures == 0:
        raise PredictorUserError(
            f"calibrate: no labeled failure at or before {until.isoformat()}; use a later "
            "cut-off, or set labels_path on the sources whose failures are known"
        )

    rows = {
        component: labeled_rows(
            store.scores(component=component, until=until), items, horizon, until
        )
        for component, items in known.items()
    }
    rows = {component: frame for component, frame in rows.items() if not frame.empty}
    pooled = pd.concat(rows.values(), ignore_index=True) if rows else pd.DataFrame()
    n_positive = int(pooled["target"].sum()) if not pooled.empty else 0
    if n_positive < MIN_POSITIVE_ROWS or n_positive == len(pooled):
        raise PredictorUserError(
            f"calibrate: {n_positive} of {len(pooled)} stored score rows up to "
            f"{(until - horizon).isoformat()} precede a labeled failure within "
            f"{horizon_minutes:g} min; at least {MIN_POSITIVE_ROWS} such rows and some "
            "rows without a failure are needed. Score more labeled telemetry first"
        )

    calibrator = ScoreCalibrator(method).fit(pooled["raw_risk"], pooled["target"])
    check = _out_of_time_check(rows, known, horizon, method)
    calibration = RiskCalibration(
        calibrator=calibrator,
        horizon_minutes=float(horizon_minutes),
        fitted_until=until,
        components=tuple(sorted(rows)),
        n_rows=len(pooled),
        n_positive=n_positive,
        n_failures=n_failures,
        out_of_time=None if check is None else _out_of_time_summary(check),
    )
    logger.info(
        "calibrate: %s map fitted on %d rows of %d components, %d positive, %d failures, up to %s",
        method,
        len(pooled),
        len(rows),
        n_positive,
        n_failures,
        until,
    )
    return calibration


def _out_of_time_check(
    rows: Mapping[str, pd.DataFrame],
    failures: Mapping[str, Sequence[LabeledFailure]],
    horizon: pd.Timedelta,
    method: str,
) -> OutOfTimeResult | None:
    """Fit on each component's earlier rows, evaluate on its later rows, pooled.

    The earlier part of a component ends at its split time, and its targets are rebuilt
    with that time as the cut-off, so no label of the evaluated part reaches the fit.
    """
    fit_parts, eval_parts = [], []
    for component, frame in rows.items():
        split = frame["scored_at"].iloc[math.floor(OUT_OF_TIME_FIT_FRACTION * len(frame))]
        fit_parts.append(labeled_rows(_as_scores(frame), failures[component], horizon, split))
        eval_parts.append(frame[frame["scored_at"] > split])
    fit = pd.concat(fit_parts, ignore_index=True)
    evaluated = pd.concat(eval_parts, ignore_index=True)
    positives = int(fit["target"].sum())
    if evaluated.empty or positives in (0, len(fit)):
        logger.warning(
            "calibrate: out-of-time check skipped; the earlier halves contain %d positive of "
            "%d rows and the later halves %d rows",
            positives,
            len(fit),
            len(evaluated),
        )
        return None

    calibrator = ScoreCalibrator(method).fit(fit["raw_risk"], fit["target"])
    probability = calibrator.transform(evaluated["raw_risk"].to_numpy())
    target = evaluated["target"].to_numpy()
    result = OutOfTimeResult(
        brier=brier_score(probability, target),
        brier_base_rate=brier_score(np.full(len(target), calibrator.base_rate_), target),
        base_rate=calibrator.base_rate_,
        n_fit=len(fit),
        n_eval=len(target),
        probability=probability,
        target=target,
    )
    level = logging.INFO if result.brier < result.brier_base_rate else logging.WARNING
    logger.log(
        level,
        "calibrate: out of time, Brier %.5f against %.5f for the base rate %.4f (%d rows "
        "fitted, %d evaluated)",
        result.brier,
        result.brier_base_rate,
        result.base_rate,
        result.n_fit,
        result.n_eval,
    )
    return result


def _as_scores(frame: pd.DataFrame) -> pd.DataFrame:
    """Return labeled rows in the layout of stored scores, for a second cut-off."""
    return pd.DataFrame(
        {
            "scored_at": frame["scored_at"],
            "risk": frame["raw_risk"],
            "raw_risk": frame["raw_risk"],
            "calibrated": False,
        }
    )


def _out_of_time_summary(result: OutOfTimeResult) -> dict[str, float]:
    return {
        "brier": round(result.brier, 6),
        "brier_base_rate": round(result.brier_base_rate, 6),
        "base_rate": round(result.base_rate, 6),
        "n_fit": result.n_fit,
        "n_eval": result.n_eval,
    }


def save_risk_calibration(calibration: RiskCalibration, path: Path) -> None:
    """Write ``calibration`` as JSON to ``path`` through a temporary file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(calibration.to_dict(), indent=2), encoding="utf-8")
    temporary.replace(path)


def load_risk_calibration(path: Path) -> RiskCalibration | None:
    """Read a calibration written by :func:`save_risk_calibration`, or None if absent.

    Raises
    ------
    InputError
        If the file is not valid JSON or does not describe a calibration.
    """
    if not path.is_file():
        return None
    try:
        return RiskCalibration.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as error:
        raise InputError(
            f"invalid calibration file: {error}; run `predictor calibrate` again or delete it",
            path=str(path),
        ) from None
