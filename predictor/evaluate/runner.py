"""Backtest runs over a whole data set: NAB files or SMD/ASD server matrices.

Each run writes per-row scores in the data set's own result layout, computes the metrics
for every detector, writes them as JSON and logs one MLflow run with the files attached.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictor.calibration import evaluate_out_of_time
from predictor.config import Settings
from predictor.evaluate import metrics
from predictor.evaluate.backtest import (
    ENSEMBLE,
    BacktestConfig,
    hold_back_repeats,
    score_series,
    score_series_refitted,
    summarize_detectors,
)
from predictor.evaluate.long_layout import (
    TrainSplit,
    locate_files,
    read_failure_windows,
    read_telemetry,
    split_component,
)
from predictor.evaluate.nab import PROFILES, load_windows, probation_length, score_corpus
from predictor.exceptions import ConfigError, InputError
from predictor.progress import progress
from predictor.telemetry.schema import COMPONENT, NAME_PATTERN, is_valid_name

logger = logging.getLogger(__name__)

# The anomaly score at which the risk levels raise `high` when nothing else adds risk;
# the label-free threshold of the SMD/ASD report.
LABEL_FREE_THRESHOLD = 0.7
# Rows before a labeled event in which a flag counts as an early warning, not a false alarm.
EARLY_ROWS = 60
# NAB streams run for weeks after their probationary rows and their normal level drifts:
# detectors are refitted every probation length of rows on at most this many past rows.
NAB_HISTORY_ROWS = 3000
# After a NAB detection at or above this score (tail probability 1e-2), the next third of
# a probation length of rows is held back as the same event. A probation length is 15 % of
# a file (at most 750 rows), and the labeled windows of a file share 10 % of its rows. So a
# third of it is about one window on a file with two windows.
NAB_HOLD_THRESHOLD = 0.5
NAB_HOLD_FRACTION = 1.0 / 3.0
# Row spacing of SMD, which carries no clock time: one row a minute.
DEFAULT_MATRIX_STEP_SECONDS = 60.0
FORMATS = ("nab", "smd", "asd", "matrix", "long")
# Out-of-time calibration of the ensemble score: isotonic, fitted on the first half of every
# entity's test rows pooled over the fleet, evaluated on the second halves. One fleet-wide
# map had a lower Brier score than one map per entity on ASD and on SMD scores smoothed
# over 5 rows (not on unsmoothed SMD scores), and it needs no failure in an entity's own
# first half.
CALIBRATION_METHOD = "isotonic"
CALIBRATION_FIT_FRACTION = 0.5
CALIBRATION_POOLING = "fleet"


def backtest_nab(data_dir: Path, out_dir: Path, config: BacktestConfig) -> dict[str, Any]:
    """Backtest every NAB file under ``data_dir/data`` and score it with the NAB rules.

    Each file is fitted on its probationary rows (the first 15 %, at most 750) and
    scored forward, refitted every probation length of rows on past rows only;
    probationary rows get score 0 because NAB does not score them. After a detection,
    repeated detections of the same event are held back (:func:`hold_back_repeats`).

    Returns
    -------
    dict
        ``{"detectors": {name: {profile: score}}, "thresholds": ..., "files": n}``.
    """
    files = sorted((data_dir / "data").glob("*/*.csv"))
    if not files:
        raise InputError(
            "no NAB files found; expected data/<category>/<name>.csv", path=str(data_dir)
        )
    windows = load_windows(data_dir / "labels" / "combined_windows.json")

    results: dict[str, dict[str, pd.DataFrame]] = {name: {} for name in config.detector_names()}
    for path in progress(files, desc="backtest nab", unit="file"):
        key = f"{path.parent.name}/{path.name}"
        frame = pd.read_csv(path)
        values = frame[["value"]].astype("float64").reset_index(drop=True)
        n_train = probation_length(len(frame))
        try:
            scores = score_series_refitted(values, n_train, config, n_train, NAB_HISTORY_ROWS)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
        hold_rows = int(NAB_HOLD_FRACTION * n_train)
        for name, test_scores in scores.items():
            held = hold_back_repeats(test_scores, NAB_HOLD_THRESHOLD, hold_rows)
            full = np.concatenate([np.zeros(n_train), held])
            results[name][key] = pd.DataFrame(
                {"timestamp": frame["timestamp"], "anomaly_score": np.clip(full, 0.0, 1.0)}
            )

    summary: dict[str, Any] = {"files": len(files), "detectors": {}, "thresholds": {}}
    for name, by_file in results.items():
        for key, frame in by_file.items():
            category, file_name = key.split("/")
            target = out_dir / name / category / f"{name}_{file_name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            frame.to_csv(target, index=False)
        summary["detectors"][name] = {}
        summary["thresholds"][name] = {}
        for profile in PROFILES:
            corpus = score_corpus(by_file, windows, profile)
            summary["detectors"][name][profile] = round(corpus.normalized_score, 2)
            summary["thresholds"][name][profile] = round(corpus.threshold, 4)
    return summary


def _read_matrix(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, header=None, dtype="float64")
    except FileNotFoundError:
        raise InputError("file not found", path=str(path)) from None


def _entity_metrics(
    labels: np.ndarray, scores: np.ndarray, train_scores: np.ndarray, rows_per_day: float
) -> dict[str, float]:
    flags = scores >= LABEL_FREE_THRESHOLD
    lead = metrics.median_lead_time(labels, flags, early_rows=EARLY_ROWS)
    return {
        "best_f1": metrics.best_f1(labels, scores).f1,
        "f1_label_free": metrics.f1_at_threshold(labels, scores, LABEL_FREE_THRESHOLD),
        "auc_pr": metrics.auc_pr(labels, scores),
        "vus_pr": metrics.vus_pr(labels, scores),
        "event_recall": metrics.event_recall(labels, flags, early_rows=EARLY_ROWS),
        "median_lead_rows": float(lead) if lead is not None else float("nan"),
        "false_alarms_per_day": metrics.false_alarms_per_day(
            labels, flags, rows_per_day, early_rows=EARLY_ROWS
        ),
        "train_flag_rate": float(np.mean(train_scores >= LABEL_FREE_THRESHOLD)),
    }


def backtest_matrix(
    data_dir: Path,
    out_dir: Path,
    config: BacktestConfig,
    step_seconds: float,
    horizon_minutes: float = 60.0,
) -> dict[str, Any]:
    """Backtest every entity of an SMD/ASD layout: fit on ``train/``, score ``test/``.

    Writes ``<out>/<entity>.csv`` with ``row,anomaly_score`` for the ensemble and
    ``<out>/<detector>/<entity>.csv`` for every other detector. The returned summary
    also holds, under ``calibration``, the out-of-time calibration of the ensemble's
    test scores into the probability of a failure within ``horizon_minutes``.
    """
    train_files = sorted((data_dir / "train").glob("*.txt.gz"))
    if not train_files:
        raise InputError("no entities found; expected train/<entity>.txt.gz", path=str(data_dir))
    rows_per_day = 86400.0 / step_seconds

    per_entity: dict[str, dict[str, dict[str, float]]] = {}
    ensemble_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for train_path in progress(train_files, desc="backtest matrix", unit="entity"):
        entity = train_path.name.removesuffix(".txt.gz")
        train = _read_matrix(train_path)
        test = _read_matrix(data_dir / "test" / train_path.name)
        labels = np.loadtxt(data_dir / "test_label" / f"{entity}.txt", dtype=int)
        if len(labels) != len(test):
            raise InputError(
                f"{len(labels)} labels for {len(test)} test rows; expected one label per row",
                path=str(data_dir / "test_label" / f"{entity}.txt"),
            )
        scores = score_series(train, test, config)
        ensemble_scores[entity] = (scores.test[ENSEMBLE], labels)

        per_entity[entity] = {}
        for name, test_scores in scores.test.items():
            target = (
                out_dir / f"{entity}.csv" if name == ENSEMBLE else out_dir / name / f"{entity}.csv"
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame(
                {"row": np.arange(len(test_scores)), "anomaly_score": test_scores}
            ).to_csv(target, index=False)
            per_entity[entity][name] = _entity_metrics(
                labels, test_scores, scores.train[name], rows_per_day
            )
        logger.info(
            "backtest: %s scored %d test rows, ensemble best F1 %.3f, AUC-PR %.3f",
            entity,
            len(test),
            per_entity[entity][ENSEMBLE]["best_f1"],
            per_entity[entity][ENSEMBLE]["auc_pr"],
        )

    horizon_rows = _horizon_rows(horizon_minutes, step_seconds)
    summary = _metrics_summary(per_entity)
    summary["calibration"] = _calibration_summary(ensemble_scores, horizon_rows)
    return summary


def backtest_long(
    data_dir: Path,
    out_dir: Path,
    config: BacktestConfig,
    settings: Settings,
    step_seconds: float | None = None,
    split: TrainSplit | None = None,
) -> dict[str, Any]:
    """Backtest every component of a data set in the long telemetry layout.

    :mod:`~predictor.evaluate.long_layout` describes the files. Each component's grid is
    split in time by ``split``; the detectors fit on the first part and score the rest in
    time order. Writes ``<out>/<component>.csv`` with ``timestamp,anomaly_score`` for the
    ensemble and ``<out>/<detector>/<component>.csv`` for every other detector, one row
    per scored grid point.

    Parameters
    ----------
    data_dir : Path
        Folder with ``telemetry.csv`` or ``telemetry.parquet`` and ``labels.csv``.
    out_dir : Path
    config : BacktestConfig
    settings : Settings
        Only the validation rules are used; declared components are not required.
    step_seconds : float or None, default=None
        Grid spacing of every component; None infers it per component.
    split : TrainSplit or None, default=None
        Where training ends; None means the first half of each component's grid.

    Returns
    -------
    dict
        The SMD/ASD summary (``entities``, ``mean``, ``per_entity``) over the components
        with a labeled failure in their scored part, plus ``components`` (grid and split
        of every component) and ``split``.

    Raises
    ------
    InputError
        If a file is missing or malformed (see :func:`read_telemetry`,
        :func:`read_failure_windows`), a component cannot be split, or no component has
        a labeled failure in its scored part.
    """
    split = split if split is not None else TrainSplit()
    telemetry_path, labels_path = locate_files(data_dir)
    rows = read_telemetry(telemetry_path, settings)
    by_component = dict(tuple(rows.groupby(COMPONENT, sort=True)))
    windows = read_failure_windows(labels_path, by_component)

    per_entity: dict[str, dict[str, dict[str, float]]] = {}
    components: dict[str, dict[str, Any]] = {}
    for component in progress(by_component, desc="backtest long", unit="component"):
        data = split_component(
            component, by_component[component], windows, split, step_seconds, labels_path
        )
        scores = score_series(data.train, data.test, config)
        timestamps = [timestamp.isoformat() for timestamp in data.test.index]
        for name, test_scores in scores.test.items():
            folder = out_dir if name == ENSEMBLE else out_dir / name
            target = _component_file(folder, component)
            target.parent.mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"timestamp": timestamps, "anomaly_score": test_scores}).to_csv(
                target, index=False
            )
        components[component] = {
            "step_seconds": data.step_seconds,
            "train_points": len(data.train),
            "test_points": len(data.test),
            "test_start": timestamps[0],
            "failures_in_train": data.failures_in_train,
            "failures_in_test": data.failures_in_test,
        }
        if not data.labels.any():
            logger.warning(
                "backtest: component %s has no labeled failure in its %d scored points; "
                "scores written, no metrics",
                component,
                len(data.test),
            )
            continue
        rows_per_day = 86400.0 / data.step_seconds
        per_entity[component] = {
            name: _entity_metrics(data.labels, test_scores, scores.train[name], rows_per_day)
            for name, test_scores in scores.test.items()
        }
        logger.info(
            "backtest: %s scored %d grid points with %d failures, ensemble best F1 %.3f, "
            "AUC-PR %.3f",
            component,
            len(data.test),
            data.failures_in_test,
            per_entity[component][ENSEMBLE]["best_f1"],
            per_entity[component][ENSEMBLE]["auc_pr"],
        )

    if not per_entity:
        raise InputError(
            f"no labeled failure lies in the scored part of any of the {len(components)} "
            "components, so no metric can be computed; label failures after the training "
            "part or move --train-fraction or --train-until earlier",
            path=str(labels_path),
        )
    summary = _metrics_summary(per_entity)
    summary["components"] = components
    summary["split"] = split.describe()
    return summary


def _component_file(folder: Path, component: str) -> Path:
    """Return ``<folder>/<component>.csv``, raising for a name that is not a safe file name."""
    # The validation already rejects such names; this guard keeps every result file
    # inside `folder` even for rows that bypass it.
    if not is_valid_name(component):
        raise InputError(
            f"component name {component!r} cannot be a file name; expected names matching "
            f"{NAME_PATTERN.pattern}"
        )
    return folder / f"{component}.csv"


def _metrics_summary(per_entity: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """Return the mean and per-entity metrics in the JSON shape of the SMD/ASD summary."""
    means = summarize_detectors(per_entity)
    return {
        "entities": len(per_entity),
        "mean": {
            name: {key: _json_number(value) for key, value in row.items()}
            for name, row in means.iterrows()
        },
        "per_entity": {
            entity: {
                name: {key: _json_number(value) for key, value in values.items()}
                for name, values in by_detector.items()
            }
            for entity, by_detector in per_entity.items()
        },
    }


def _horizon_rows(horizon_minutes: float, step_seconds: float) -> int:
    """Return the rows in a horizon of ``horizon_minutes`` at one row per ``step_seconds``."""
    return max(1, round(horizon_minutes * 60.0 / step_seconds))


def _calibration_summary(
    ensemble_scores: dict[str, tuple[np.ndarray, np.ndarray]], horizon_rows: int
) -> dict[str, Any]:
    """Calibrate the ensemble scores out of time and summarise Brier scores and reliability.

    When the data cannot be calibrated (a part without failures, or entities too short to
    split), the summary gives the reason under ``error`` instead of the figures.
    """
    summary: dict[str, Any] = {
        "method": CALIBRATION_METHOD,
        "fit_fraction": CALIBRATION_FIT_FRACTION,
        "pooling": CALIBRATION_POOLING,
        "horizon_rows": horizon_rows,
    }
    try:
        result = evaluate_out_of_time(
            ensemble_scores,
            horizon_rows,
            method=CALIBRATION_METHOD,
            fit_fraction=CALIBRATION_FIT_FRACTION,
            pooling=CALIBRATION_POOLING,
        )
    except ValueError as error:
        logger.warning("backtest: calibration skipped: %s", error)
        return summary | {"error": str(error)}

    summary["per_entity"] = {
        entity: {
            "brier": _json_number(item.brier, digits=6),
            "brier_base_rate": _json_number(item.brier_base_rate, digits=6),
            "base_rate": _json_number(item.base_rate, digits=6),
            "n_eval": item.n_eval,
        }
        for entity, item in result.per_entity.items()
    }
    summary["mean"] = {key: _json_number(value, digits=6) for key, value in result.mean().items()}
    summary["pooled"] = {
        "brier": _json_number(result.brier, digits=6),
        "brier_base_rate": _json_number(result.brier_base_rate, digits=6),
    }
    summary["reliability"] = [
        {
            "bin_low": _json_number(row.bin_low),
            "bin_high": _json_number(row.bin_high),
            "count": int(row.count),
            "mean_predicted": _json_number(row.mean_predicted, digits=6),
            "observed_rate": _json_number(row.observed_rate, digits=6),
        }
        for row in result.reliability.itertuples(index=False)
    ]
    return summary


def _json_number(value: float, digits: int = 4) -> float | None:
    return round(float(value), digits) if np.isfinite(value) else None


def ensemble_comparison(summary: dict[str, Any], metric: str) -> dict[str, Any]:
    """Return the ensemble's metric next to the best single member's, as a measured line."""
    values = summary["mean"] if "mean" in summary else summary["detectors"]
    scores = {
        name: (row[metric] if isinstance(row, dict) else row) for name, row in values.items()
    }
    members = {
        name: value for name, value in scores.items() if name != ENSEMBLE and value is not None
    }
    best_member = max(members, key=members.__getitem__)
    return {
        "metric": metric,
        "ensemble": scores[ENSEMBLE],
        "best_detector": best_member,
        "best_detector_value": members[best_member],
        "ensemble_minus_best": round(scores[ENSEMBLE] - members[best_member], 4),
    }


def run_backtest(
    settings: Settings,
    data_dir: Path,
    data_format: str,
    out_dir: Path,
    config: BacktestConfig,
    step_seconds: float | None = None,
    split: TrainSplit | None = None,
) -> dict[str, Any]:
    """Run a backtest, write ``summary.json`` and log one MLflow run with the results.

    ``data_format`` is one of :data:`FORMATS`. ``step_seconds`` is the row spacing of
    SMD/ASD data (None means 60 s) or the grid step of the long layout (None infers it
    per component). ``split`` applies to the long layout only.
    """
    started = time.perf_counter()
    if split is not None and data_format != "long":
        raise ConfigError(
            f"a train split applies to the long format only, got format {data_format!r}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    if data_format == "nab":
        summary = backtest_nab(data_dir, out_dir, config)
        comparison = ensemble_comparison(
            {"detectors": {name: row["standard"] for name, row in summary["detectors"].items()}},
            "standard",
        )
    elif data_format in ("smd", "asd", "matrix"):
        matrix_step = DEFAULT_MATRIX_STEP_SECONDS if step_seconds is None else step_seconds
        summary = backtest_matrix(
            data_dir, out_dir, config, matrix_step, settings.model.horizon_minutes
        )
        comparison = ensemble_comparison(summary, "auc_pr")
    elif data_format == "long":
        summary = backtest_long(data_dir, out_dir, config, settings, step_seconds, split)
        comparison = ensemble_comparison(summary, "auc_pr")
    else:
        raise ConfigError(
            f"unknown backtest format {data_format!r}; expected one of {list(FORMATS)}"
        )
    summary["comparison"] = comparison
    summary["config"] = config.__dict__ | {"members": list(config.members)}
    summary["format"] = data_format
    summary["data"] = str(data_dir)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")

    run_id = _log_to_mlflow(settings, summary, out_dir)
    logger.info(
        "backtest: %s done in %.1f s, MLflow run %s", data_format, summary["seconds"], run_id
    )
    return summary


def _log_to_mlflow(settings: Settings, summary: dict[str, Any], out_dir: Path) -> str:
    """Log one MLflow run with the backtest's parameters, mean metrics and result files."""
    from predictor.tracking import _import_mlflow, configure_mlflow

    mlflow = _import_mlflow()
    experiment_id = configure_mlflow(settings)
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"backtest-{summary['format']}"
    ) as run:
        mlflow.set_tags({"predictor.stage": "backtest", "predictor.data": summary["data"]})
        mlflow.log_params({key: str(value) for key, value in summary["config"].items()})
        if "split" in summary:
            mlflow.log_params({key: str(value) for key, value in summary["split"].items()})
        if "mean" in summary:
            for detector, row in summary["mean"].items():
                mlflow.log_metrics(
                    {f"{detector}.{key}": value for key, value in row.items() if value is not None}
                )
        else:
            for detector, row in summary["detectors"].items():
                mlflow.log_metrics(
                    {f"{detector}.nab_{profile}": value for profile, value in row.items()}
                )
        mlflow.log_metrics(_calibration_metrics(summary))
        mlflow.log_artifacts(str(out_dir), artifact_path="backtest")
        return run.info.run_id


def _calibration_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Return the mean out-of-time Brier scores of a backtest summary as MLflow metrics."""
    mean = summary.get("calibration", {}).get("mean", {})
    return {f"calibration.{key}": value for key, value in mean.items() if value is not None}
