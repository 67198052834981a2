"""Command line: ``predictor ingest | train | score | calibrate | run | backtest | report``,
``predictor models list | promote | rollback`` and ``predictor serve``.

A user mistake (missing file, unknown config key, bad value) exits with code 2 and one
line on stderr. An unexpected failure keeps its traceback, because that is a bug.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from predictor import __version__
from predictor.exceptions import ConfigError, PredictorUserError

if TYPE_CHECKING:
    from predictor.evaluate.long_layout import TrainSplit

logger = logging.getLogger("predictor.cli")

EXIT_USAGE = 2


def _timestamp(value: str) -> pd.Timestamp:
    try:
        timestamp = pd.Timestamp(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid time {value!r}; expected ISO 8601, e.g. 2024-01-31T12:00Z"
        ) from None
    if timestamp.tzinfo is None:
        raise argparse.ArgumentTypeError(f"time {value!r} has no UTC offset; add 'Z' or '+00:00'")
    return timestamp.tz_convert("UTC")


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number {value!r}") from None
    if not 0.0 < number < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {value!r}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``predictor`` command."""
    parser = argparse.ArgumentParser(
        prog="predictor",
        description="Predict failures of model-serving infrastructure from its telemetry.",
    )
    parser.add_argument("--version", action="version", version=f"predictor {__version__}")
    parser.add_argument(
        "--config",
        help="TOML configuration file (default: PREDICTOR_CONFIG, "
        "./predictor.toml, then the sample in data/predictor.toml)",
    )
    parser.add_argument(
        "--home", help="folder for all state (default: PREDICTOR_HOME or ./.predictor)"
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("PREDICTOR_LOG_LEVEL", "INFO"),
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log level (default: INFO)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    ingest = commands.add_parser("ingest", help="read telemetry files into the telemetry store")
    ingest.add_argument(
        "--source",
        action="append",
        dest="sources",
        metavar="NAME",
        help="ingest only this configured source (repeatable)",
    )
    ingest.add_argument(
        "path", nargs="?", help="a file to ingest instead of the configured sources"
    )
    ingest.add_argument(
        "--format",
        choices=("long", "wide", "nab", "matrix", "openmetrics"),
        default="long",
        help="layout of PATH (default: long)",
    )
    ingest.add_argument("--component", help="component name for PATH when the file has none")
    ingest.add_argument(
        "--metric", default="value", help="metric name for a NAB file (default: value)"
    )

    compact = commands.add_parser(
        "compact", help="merge the telemetry files of each completed day (and hour) into one"
    )
    compact.add_argument(
        "--before",
        metavar="TIME",
        type=_timestamp,
        help="compact the days and hours that end at or before this UTC time (default: now)",
    )

    train = commands.add_parser("train", help="fit models and register them in MLflow")
    train.add_argument(
        "--until",
        type=_timestamp,
        help="train on rows before this UTC time (default: the training part of each source)",
    )
    train.add_argument(
        "--lookback-days", type=_positive_float, help="train on at most this many days"
    )
    train.add_argument(
        "--component",
        action="append",
        dest="components",
        metavar="NAME",
        help="train only this component (repeatable)",
    )
    train.add_argument(
        "--no-gate",
        action="store_true",
        help="promote the new models to champion without comparing them on a holdout",
    )

    score = commands.add_parser("score", help="score new telemetry, publish risk, call hooks")
    score.add_argument(
        "--until", type=_timestamp, help="score up to this UTC time (default: newest telemetry)"
    )
    score.add_argument(
        "--dry-run", action="store_true", help="record hook decisions without sending them"
    )

    calibrate = commands.add_parser(
        "calibrate",
        help="fit the map from risk to the probability of a labeled failure within the horizon",
    )
    calibrate.add_argument(
        "--until",
        type=_timestamp,
        help="read scores and labels up to this UTC time (default: the newest score)",
    )
    calibrate.add_argument(
        "--method",
        choices=("isotonic", "platt"),
        default="isotonic",
        help="isotonic regression or a logistic (Platt) curve (default: isotonic)",
    )

    run = commands.add_parser(
        "run", help="ingest, train and replay the configured sources, then report"
    )
    run.add_argument(
        "--chunk-hours",
        type=_positive_float,
        default=24.0,
        help="data time covered by each replayed scoring cycle, in hours (default: 24)",
    )
    run.add_argument(
        "--dry-run", action="store_true", help="record hook decisions without sending them"
    )
    backtest = commands.add_parser(
        "backtest", help="fit on the past part of labeled data, score forward, measure"
    )
    backtest.add_argument(
        "--data", required=True, help="data set folder in the layout given by --format"
    )
    backtest.add_argument(
        "--format",
        required=True,
        choices=("nab", "smd", "asd", "long"),
        dest="data_format",
        help="layout of --data: nab (data/, labels/), smd/asd (train/, test/, test_label/) "
        "or long (telemetry.csv or telemetry.parquet with the columns "
        "timestamp,component,metric,value, and labels.csv with the columns "
        "component,start,end: inclusive failure windows in UTC, start == end for an instant)",
    )
    backtest.add_argument("--out", required=True, help="folder for result files and summary.json")
    backtest.add_argument(
        "--step-seconds",
        type=_positive_float,
        help="row spacing in seconds: of smd/asd data, for false alarms per day (default: 60); "
        "the grid step of long data (default: the median spacing of each component)",
    )
    backtest.add_argument(
        "--train-fraction",
        type=_fraction,
        help="long only: share of each component's timeline, from its start, that trains "
        "the detectors (default: 0.5)",
    )
    backtest.add_argument(
        "--train-until",
        type=_timestamp,
        help="long only: train on every component's grid points before this UTC time "
        "instead of a fraction",
    )
    backtest.add_argument(
        "--window-steps",
        type=int,
        default=None,
        help="trailing feature window in rows (default: model.window_steps of the configuration)",
    )
    backtest.add_argument(
        "--smoothing-span",
        type=int,
        default=None,
        help="span in rows of the weighted trailing mean of every detector's surprise "
        "(default: model.smoothing_span of the configuration; 1 means none)",
    )
    models = commands.add_parser("models", help="list, promote and roll back registered models")
    models_commands = models.add_subparsers(dest="models_command", metavar="ACTION")
    models_commands.required = True
    models_commands.add_parser(
        "list", help="every version: aliases, MLflow run, gate metrics, status"
    )
    promote = models_commands.add_parser("promote", help="make a version the champion")
    promote.add_argument("version", metavar="VERSION", help="NAME/N, or N with --model")
    promote.add_argument("--model", help="registered model name (needed when there are several)")
    rollback = models_commands.add_parser(
        "rollback", help="point champion back at the previous champion version"
    )
    rollback.add_argument("--model", help="registered model name (needed when there are several)")
    from predictor.store import HOOK_STATUSES

    hooks = commands.add_parser("hooks", help="list, retry, test and deliver hook actions")
    hooks_commands = hooks.add_subparsers(dest="hooks_command", metavar="ACTION")
    hooks_commands.required = True
    hooks_list = hooks_commands.add_parser("list", help="hook actions in the outbox")
    hooks_list.add_argument(
        "--status",
        action="append",
        choices=HOOK_STATUSES,
        help="only actions in this status (repeatable; default: all)",
    )
    hooks_list.add_argument(
        "--limit", type=int, default=50, help="show the newest N actions (default: 50)"
    )
    hooks_retry = hooks_commands.add_parser(
        "retry", help="queue a dead or held action again with fresh attempts, and deliver"
    )
    hooks_retry.add_argument("id", type=int, metavar="ID", help="action id from `hooks list`")
    hooks_test = hooks_commands.add_parser(
        "test", help='send a payload marked "test": true through a configured hook'
    )
    hooks_test.add_argument("name", metavar="NAME", help="hook name from the configuration")
    hooks_deliver = hooks_commands.add_parser("deliver", help="send the due pending actions")
    hooks_deliver.add_argument(
        "--max-actions", type=int, default=100, help="claim at most N actions (default: 100)"
    )
    report = commands.add_parser(
        "report", help="write the backtest and risk-store figures as one HTML page"
    )
    report.add_argument("--out", required=True, help="HTML file to write")
    report.add_argument(
        "--backtest", metavar="DIR", help="output folder of `predictor backtest` to include"
    )
    report.add_argument(
        "--data",
        metavar="DIR",
        help="labeled data folder of the backtest (default: the one in its summary.json)",
    )
    serve = commands.add_parser(
        "serve", help="serve the risk store over HTTP: risk API, probes and /metrics"
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)"
    )
    serve.add_argument(
        "--port", type=_port, default=8000, help="TCP port to listen on (default: 8000)"
    )
    serve.add_argument(
        "--no-access-log", action="store_true", help="do not log one line per request"
    )
    return parser


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {value!r}; expected an integer") from None
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value!r}")
    return number


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # MLflow and its database migrations log every step at INFO; keep the output about predictor.
    for name in ("mlflow", "alembic", "urllib3", "numba"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def _settings(args: argparse.Namespace):
    from predictor.config import load_settings

    if args.home:
        os.environ["PREDICTOR_HOME"] = args.home
    return load_settings(args.config)


def _cmd_ingest(args: argparse.Namespace) -> int:
    from predictor import pipeline
    from predictor.config import SourceConfig
    from predictor.report import format_table

    settings = _settings(args)
    if args.path:
        if args.sources:
            raise ConfigError("give either PATH or --source, not both")
        source = SourceConfig(
            name=os.path.basename(args.path),
            format=args.format,
            path=os.path.abspath(args.path),
            component=args.component,
            metric=args.metric,
        )
        if source.format in ("nab", "matrix") and source.component is None:
            raise ConfigError(f"--component is required for --format {source.format}")
        summaries = pipeline.ingest(settings, [source])
    else:
        summaries = pipeline.ingest(settings, pipeline.select_sources(settings, args.sources))

    rows = [(s.source, s.rows_read, s.written, s.quarantined, s.duplicates) for s in summaries]
    print(format_table(("source", "read", "written", "quarantined", "duplicates"), rows))
    return 0


def _cmd_compact(args: argparse.Namespace) -> int:
    from predictor import pipeline
    from predictor.report import format_table
    from predictor.telemetry.store_compact import CompactionError

    settings = _settings(args)
    try:
        compacted = pipeline.open_telemetry(settings).compact(args.before)
    except CompactionError as error:
        print(f"predictor compact: failed: {error}", file=sys.stderr)
        return 1
    if not compacted:
        print("no completed day or hour has more than one telemetry file")
        return 0
    rows = [(day.date, day.hour or "whole day", day.files, day.rows) for day in compacted]
    print(format_table(("day", "hour", "files merged", "rows"), rows))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from predictor import pipeline

    settings = _settings(args)
    result = pipeline.train(
        settings, args.until, args.lookback_days, args.components, gate=not args.no_gate
    )
    print(
        f"trained {len(result.components)} components in {result.metrics['train_seconds']:.1f} s"
    )
    for group in result.groups:
        print(f"{group.label}: {group.decision} (MLflow run {group.run_id}): {group.reason}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from predictor.lifecycle import registry
    from predictor.report import format_table

    settings = _settings(args)
    if args.models_command == "list":
        versions = registry.list_versions(settings)
        if not versions:
            raise PredictorUserError(
                f"no registered model in {settings.mlflow_tracking_uri}; run `predictor train`"
            )
        rows = [
            (
                info.name,
                info.version,
                ",".join(info.aliases) or "-",
                info.run_id,
                " ".join(f"{k}={v:.4g}" for k, v in sorted(info.gate_metrics.items())) or "-",
                info.status or "-",
            )
            for info in versions
        ]
        print(format_table(("model", "version", "aliases", "run", "gate", "status"), rows))
        return 0
    if args.models_command == "promote":
        name, version = registry.resolve_version(settings, args.version, args.model)
        before = registry.promote(settings, name, version, "promoted by hand")
        print(f"{name}/{version} is champion (was {before or 'none'})")
        return 0
    name = registry.resolve_model(settings, args.model)
    current, target = registry.rollback(settings, name)
    print(f"{name}: champion rolled back from version {current} to {target}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from predictor import pipeline
    from predictor.report import risk_table

    settings = _settings(args)
    store = pipeline.open_risk_store(settings)
    result = pipeline.score(settings, args.until, dry_run=args.dry_run, store=store)
    print(risk_table(store))
    print(
        f"\n{result.scores_written} scores written up to {result.until}, "
        f"{result.hook_calls} hook calls queued, {result.hooks_delivered} delivered, "
        f"{result.hooks_dead} dead"
    )
    if result.failed_components:
        for component, error in sorted(result.failed_components.items()):
            print(f"component {component} failed: {error}", file=sys.stderr)
        return 1
    return 0


def _cmd_hooks(args: argparse.Namespace) -> int:
    from predictor import pipeline
    from predictor.hooks import outbox
    from predictor.report import format_table

    settings = _settings(args)
    store = pipeline.open_risk_store(settings)
    try:
        if args.hooks_command == "list":
            frame = store.hook_calls(status=args.status)
            rows = [
                (
                    row.id,
                    row.hook,
                    row.component,
                    f"{row.previous_level or '-'}->{row.level}",
                    row.scored_at.isoformat(),
                    row.status,
                    row.attempts,
                    row.last_error or row.attempt_detail or "-",
                )
                for row in frame.tail(args.limit).itertuples()
            ]
            headers = ("id", "hook", "component", "transition", "scored_at", "status")
            print(format_table((*headers, "attempts", "detail"), rows))
            counts = frame["status"].value_counts().sort_index()
            summary = ", ".join(f"{count} {status}" for status, count in counts.items())
            print(f"\n{len(frame)} actions: {summary or 'none'}")
            return 0
        if args.hooks_command == "retry":
            action = outbox.retry_action(store, args.id)
            report = pipeline.deliver_hooks(settings, store=store)
            final = store.hook_action(args.id)
            print(
                f"action {action.id} ({action.hook}, {action.idempotency_key}) queued again; "
                f"now {final.status if final else 'missing'}; "
                f"{report.delivered} delivered in this run"
            )
            return 0
        if args.hooks_command == "test":
            if settings.guardrails.dry_run:
                raise PredictorUserError(
                    "[guardrails] dry_run is set, so no hook is called; unset it "
                    "(or PREDICTOR_GUARDRAILS__DRY_RUN) to send a test"
                )
            action = outbox.send_test(
                store,
                settings.hooks,
                args.name,
                home=settings.home,
                horizon_minutes=settings.model.horizon_minutes,
            )
            print(
                f"test action {action.id} to hook {action.hook}: {action.status} "
                f"({action.last_error or action.attempt_detail})"
            )
            return 0 if action.status == "delivered" else 1
        report = pipeline.deliver_hooks(settings, store=store, max_actions=args.max_actions)
        print(
            f"{len(report.ids)} actions claimed: {report.delivered} delivered, "
            f"{report.retried} to retry, {report.dead} dead, "
            f"{report.deferred} held by an open circuit breaker"
        )
        return 0
    finally:
        store.close()


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from predictor import pipeline

    settings = _settings(args)
    calibration = pipeline.calibrate(settings, args.until, method=args.method)
    print(
        f"calibrated {len(calibration.components)} components on {calibration.n_rows} score "
        f"rows ({calibration.n_positive} before a failure within "
        f"{calibration.horizon_minutes:g} min, {calibration.n_failures} labeled failures) "
        f"up to {calibration.fitted_until.isoformat()}; MLflow run {calibration.run_id}"
    )
    check = calibration.out_of_time
    if check is None:
        print("out-of-time check: skipped, one half of the timeline had no failure")
    else:
        print(
            f"out-of-time check: Brier {check['brier']:.5f} against "
            f"{check['brier_base_rate']:.5f} for the base rate {check['base_rate']:.4f} "
            f"({check['n_eval']} rows evaluated)"
        )
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from predictor import pipeline
    from predictor.report import format_table, lead_time_table, lead_times, risk_table
    from predictor.telemetry import read_labels

    settings = _settings(args)
    summaries = pipeline.ingest(settings)
    print(
        format_table(
            ("source", "read", "written", "quarantined", "duplicates"),
            [(s.source, s.rows_read, s.written, s.quarantined, s.duplicates) for s in summaries],
        )
    )

    trained = pipeline.train(settings)
    print(f"\ntrained {len(trained.components)} components")
    for group in trained.groups:
        print(f"{group.label}: {group.decision} (MLflow run {group.run_id})")

    results = pipeline.replay(settings, pd.Timedelta(hours=args.chunk_hours), dry_run=args.dry_run)
    written = sum(result.scores_written for result in results)
    calls = sum(result.hook_calls for result in results)
    print(
        f"replayed {len(results)} scoring cycles: {written} scores written, {calls} hook calls\n"
    )

    store = pipeline.open_risk_store(settings)
    print(risk_table(store))
    failures = [
        failure
        for source in settings.sources
        if source.labels_path
        for failure in read_labels(source)
    ]
    if failures:
        print()
        print(lead_time_table(lead_times(store, failures)))
    print("\nstate:")
    for name, path in pipeline.home_summary(settings).items():
        print(f"  {name}: {path}")
    return 0


def _cmd_backtest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from predictor.evaluate.backtest import BacktestConfig
    from predictor.evaluate.runner import run_backtest
    from predictor.report import format_table

    settings = _settings(args)
    data_dir = Path(args.data)
    if not data_dir.is_dir():
        raise ConfigError(f"--data {args.data!r}: folder not found")
    window_steps = settings.model.window_steps
    if args.window_steps is not None:
        if args.window_steps < 2:
            raise ConfigError(f"--window-steps: expected an integer >= 2, got {args.window_steps}")
        window_steps = args.window_steps
    smoothing_span = settings.model.smoothing_span
    if args.smoothing_span is not None:
        if args.smoothing_span < 1:
            raise ConfigError(
                f"--smoothing-span: expected an integer >= 1, got {args.smoothing_span}"
            )
        smoothing_span = args.smoothing_span
    split = _train_split(args)
    config = BacktestConfig(
        members=settings.model.members,
        fusion=settings.model.fusion,
        member_weights=dict(settings.model.member_weights),
        window_steps=window_steps,
        n_estimators=settings.model.n_estimators,
        n_neighbors=settings.model.n_neighbors,
        max_train_rows=settings.model.max_train_rows,
        random_state=settings.model.random_state,
        smoothing_span=smoothing_span,
    )
    summary = run_backtest(
        settings, data_dir, args.data_format, Path(args.out), config, args.step_seconds, split
    )
    print(json.dumps({key: summary[key] for key in ("comparison", "seconds")}, indent=2))
    if "mean" in summary:
        rows = [
            (name, *(f"{row[key]:.3f}" if row[key] is not None else "-" for key in SUMMARY_KEYS))
            for name, row in summary["mean"].items()
        ]
        print(format_table(("detector", *SUMMARY_KEYS), rows))
    else:
        rows = [(name, *row.values()) for name, row in summary["detectors"].items()]
        print(format_table(("detector", "standard", "reward_low_FP", "reward_low_FN"), rows))
    print(f"results and summary.json in {args.out}")
    return 0


def _train_split(args: argparse.Namespace) -> TrainSplit | None:
    """Return the long format's train split from the options, or None for other formats."""
    from predictor.evaluate.long_layout import DEFAULT_TRAIN_FRACTION, TrainSplit

    if args.data_format != "long":
        for option, value in (
            ("--train-fraction", args.train_fraction),
            ("--train-until", args.train_until),
        ):
            if value is not None:
                raise ConfigError(f"{option} applies to --format long only")
        return None
    if args.train_fraction is not None and args.train_until is not None:
        raise ConfigError("give either --train-fraction or --train-until, not both")
    if args.train_until is not None:
        return TrainSplit(until=args.train_until)
    fraction = args.train_fraction if args.train_fraction is not None else DEFAULT_TRAIN_FRACTION
    return TrainSplit(fraction=fraction)


def _cmd_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from predictor.evaluate.results import load_backtest
    from predictor.html_report import render_report, write_report
    from predictor.report import read_store_history, store_label

    settings = _settings(args)
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ConfigError(f"--out {args.out!r}: folder {str(out.parent)!r} not found")
    if args.data and not args.backtest:
        raise ConfigError("--data is only valid with --backtest; add --backtest DIR")

    results = load_backtest(args.backtest, args.data) if args.backtest else None
    history = read_store_history(settings)
    notes = []
    if history is None:
        if results is None:
            raise ConfigError(
                f"nothing to report: no --backtest given and the risk store "
                f"{store_label(settings)} has no scores"
            )
        notes.append(f"The risk store {store_label(settings)} has no scores yet.")

    text, figure_count = render_report(
        results, history, store=store_label(settings), levels=settings.levels, notes=notes
    )
    write_report(out, text)
    print(f"report with {figure_count} figures written to {out}")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from predictor.api.server import serve

    settings = _settings(args)
    serve(
        settings,
        args.host,
        args.port,
        access_log=not args.no_access_log,
        log_level=args.log_level,
    )
    return 0


SUMMARY_KEYS = (
    "best_f1",
    "f1_label_free",
    "auc_pr",
    "vus_pr",
    "event_recall",
    "false_alarms_per_day",
)

COMMANDS = {
    "ingest": _cmd_ingest,
    "compact": _cmd_compact,
    "train": _cmd_train,
    "score": _cmd_score,
    "calibrate": _cmd_calibrate,
    "run": _cmd_run,
    "backtest": _cmd_backtest,
    "report": _cmd_report,
    "models": _cmd_models,
    "serve": _cmd_serve,
    "hooks": _cmd_hooks,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``predictor`` command and return its exit code."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _configure_logging(args.log_level)

    try:
        return COMMANDS[args.command](args)
    except PredictorUserError as error:
        print(f"predictor {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"predictor {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
