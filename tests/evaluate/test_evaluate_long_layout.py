"""Backtests on the long telemetry layout, built from real SMD machines of the sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictor.cli import main
from predictor.config import load_settings
from predictor.evaluate.backtest import ENSEMBLE, BacktestConfig
from predictor.evaluate.long_layout import TrainSplit
from predictor.evaluate.runner import backtest_long, backtest_matrix, run_backtest
from predictor.exceptions import ConfigError, InputError

FAST = BacktestConfig(n_estimators=20, max_train_rows=1000)
START = pd.Timestamp("2024-01-01T00:00:00Z")
MINUTE = pd.Timedelta(minutes=1)


@pytest.fixture
def settings(tmp_path):
    config = tmp_path / "predictor.toml"
    config.write_text("", encoding="utf-8")
    return load_settings(config, environ={"PREDICTOR_HOME": str(tmp_path / "home")})


def _read_machine(sample_data: Path, machine: str, part: str) -> pd.DataFrame:
    path = sample_data / "smd" / part / f"{machine}.txt.gz"
    return pd.read_csv(path, header=None, dtype="float64")


def _read_row_labels(sample_data: Path, machine: str) -> np.ndarray:
    return np.loadtxt(sample_data / "smd" / "test_label" / f"{machine}.txt", dtype=int)


def _label_runs(labels: np.ndarray) -> list[tuple[int, int]]:
    """Return the first and last row of every run of 1s."""
    edges = np.diff(np.concatenate([[0], labels, [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return list(zip(starts.tolist(), ends.tolist(), strict=True))


def _to_long(component: str, values: pd.DataFrame, times: pd.DatetimeIndex) -> pd.DataFrame:
    # Zero-padded metric names sort in column order, so the grid keeps the matrix's
    # column order, which IForest's random feature choice depends on.
    wide = values.copy()
    wide.columns = [f"m{index:02d}" for index in range(values.shape[1])]
    wide.insert(0, "timestamp", times)
    long = wide.melt(id_vars="timestamp", var_name="metric", value_name="value")
    long.insert(1, "component", component)
    return long


def _write_csv(long: pd.DataFrame, path: Path) -> None:
    text = long.copy()
    text["timestamp"] = text["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    text.to_csv(path, index=False)


def _write_labels(rows: list[tuple[str, pd.Timestamp, pd.Timestamp]], path: Path) -> None:
    frame = pd.DataFrame(
        [(component, start.isoformat(), end.isoformat()) for component, start, end in rows],
        columns=["component", "start", "end"],
    )
    frame.to_csv(path, index=False)


# --- the long layout reproduces the matrix backtest ------------------------------------


@pytest.mark.parametrize(
    ("train_rows", "test_rows"),
    [
        pytest.param(slice(0, 3000), slice(4000, 7000), id="slice"),
        pytest.param(slice(None), slice(None), id="full", marks=pytest.mark.slow),
    ],
)
def test_long_backtest_matches_matrix(sample_data, tmp_path, settings, train_rows, test_rows):
    machine = "machine-1-2"
    train = _read_machine(sample_data, machine, "train").iloc[train_rows].reset_index(drop=True)
    test = _read_machine(sample_data, machine, "test").iloc[test_rows].reset_index(drop=True)
    labels = _read_row_labels(sample_data, machine)[test_rows]

    matrix_dir = tmp_path / "smd"
    for part, frame in (("train", train), ("test", test)):
        (matrix_dir / part).mkdir(parents=True)
        frame.to_csv(matrix_dir / part / f"{machine}.txt.gz", header=False, index=False)
    (matrix_dir / "test_label").mkdir()
    np.savetxt(matrix_dir / "test_label" / f"{machine}.txt", labels, fmt="%d")

    long_dir = tmp_path / "long"
    long_dir.mkdir()
    times = pd.date_range(START, periods=len(train) + len(test), freq="min")
    long = _to_long(machine, pd.concat([train, test], ignore_index=True), times)
    long.to_parquet(long_dir / "telemetry.parquet")
    test_times = times[len(train) :]
    windows = [
        (machine, test_times[first], test_times[last]) for first, last in _label_runs(labels)
    ]
    _write_labels(windows, long_dir / "labels.csv")

    matrix = backtest_matrix(matrix_dir, tmp_path / "out-matrix", FAST, 60.0)
    result = backtest_long(
        long_dir, tmp_path / "out-long", FAST, settings, split=TrainSplit(until=test_times[0])
    )

    for name in FAST.detector_names():
        relative = f"{machine}.csv" if name == ENSEMBLE else f"{name}/{machine}.csv"
        expected = pd.read_csv(tmp_path / "out-matrix" / relative)
        written = pd.read_csv(tmp_path / "out-long" / relative)
        assert list(written.columns) == ["timestamp", "anomaly_score"], name
        assert written["timestamp"].tolist() == [t.isoformat() for t in test_times], name
        np.testing.assert_allclose(
            written["anomaly_score"], expected["anomaly_score"], rtol=0, atol=1e-9, err_msg=name
        )
    assert result["per_entity"][machine] == matrix["per_entity"][machine]
    assert result["mean"] == matrix["mean"]
    assert result["components"][machine]["failures_in_test"] == len(windows)
    assert result["components"][machine]["step_seconds"] == 60.0


# --- several components through the command line ---------------------------------------


def _component_slice(
    sample_data: Path, machine: str, rows: slice, step: pd.Timedelta
) -> tuple[pd.DataFrame, pd.DatetimeIndex, np.ndarray]:
    """Return 5 metrics of the test rows ``rows`` of a machine, their times and labels."""
    values = _read_machine(sample_data, machine, "test").iloc[rows, :5].reset_index(drop=True)
    times = pd.date_range(START, periods=len(values), freq=step)
    return values, times, _read_row_labels(sample_data, machine)[rows]


def test_long_backtest_several_components_cli(sample_data, tmp_path, isolated_env, capsys):
    import mlflow

    data = tmp_path / "data"
    data.mkdir()
    # machine-1-2 rows 4300:4900 contain the labeled run 4629-4687 (points 329-387, scored);
    # machine-2-1 rows 6200:6600 contain 6506-6527 (points 306-327, scored); machine-2-3 has
    # no label and is scored without metrics.
    parts = {
        "machine-1-2": _component_slice(sample_data, "machine-1-2", slice(4300, 4900), MINUTE),
        "machine-2-1": _component_slice(sample_data, "machine-2-1", slice(6200, 6600), 5 * MINUTE),
        "machine-2-3": _component_slice(sample_data, "machine-2-3", slice(1000, 1300), MINUTE),
    }
    long = pd.concat(
        [_to_long(name, values, times) for name, (values, times, _) in parts.items()],
        ignore_index=True,
    )
    _write_csv(long, data / "telemetry.csv")
    windows = []
    for name in ("machine-1-2", "machine-2-1"):
        _, times, labels = parts[name]
        windows += [(name, times[first], times[last]) for first, last in _label_runs(labels)]
    # A failure instant in the training part: counted, not scored.
    windows.append(("machine-1-2", parts["machine-1-2"][1][100], parts["machine-1-2"][1][100]))
    _write_labels(windows, data / "labels.csv")
    config = tmp_path / "predictor.toml"
    config.write_text("[model]\nn_estimators = 20\n", encoding="utf-8")
    out = tmp_path / "out"

    code = main(
        [
            *("--config", str(config), "backtest"),
            *("--data", str(data), "--format", "long", "--out", str(out)),
        ]
    )

    assert code == 0, capsys.readouterr().err
    expected_points = {"machine-1-2": 300, "machine-2-1": 200, "machine-2-3": 150}
    for component, n_points in expected_points.items():
        times = parts[component][1]
        for relative in [f"{component}.csv"] + [
            f"{name}/{component}.csv" for name in FAST.detector_names() if name != ENSEMBLE
        ]:
            written = pd.read_csv(out / relative)
            assert list(written.columns) == ["timestamp", "anomaly_score"], relative
            assert written["timestamp"].tolist() == [t.isoformat() for t in times[-n_points:]]
            assert written["anomaly_score"].between(0.0, 1.0).all(), relative

    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["format"] == "long"
    assert summary["entities"] == 2
    assert set(summary["per_entity"]) == {"machine-1-2", "machine-2-1"}
    assert summary["split"] == {"train_fraction": 0.5, "train_until": None}
    assert summary["components"]["machine-2-1"]["step_seconds"] == 300.0
    assert summary["components"]["machine-1-2"]["failures_in_train"] == 1
    assert summary["components"]["machine-1-2"]["failures_in_test"] == 1
    assert summary["components"]["machine-2-3"]["failures_in_test"] == 0
    mean_auc = np.mean(
        [summary["per_entity"][c]["ensemble"]["auc_pr"] for c in summary["per_entity"]]
    )
    assert summary["mean"]["ensemble"]["auc_pr"] == pytest.approx(mean_auc, abs=1e-4)
    assert summary["comparison"]["metric"] == "auc_pr"

    mlflow.set_tracking_uri(f"sqlite:///{isolated_env / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["predictor"])
    assert len(runs) == 1
    assert runs["tags.mlflow.runName"].iloc[0] == "backtest-long"
    assert runs["metrics.ensemble.auc_pr"].iloc[0] == pytest.approx(
        summary["mean"]["ensemble"]["auc_pr"]
    )


def test_long_backtest_row_order_irrelevant(sample_data, tmp_path, settings):
    values, times, labels = _component_slice(sample_data, "machine-1-2", slice(4300, 4700), MINUTE)
    long = _to_long("machine-1-2", values, times)
    windows = [("machine-1-2", times[first], times[last]) for first, last in _label_runs(labels)]
    results = {}
    for order, frame in (("sorted", long), ("shuffled", long.sample(frac=1.0, random_state=1))):
        data = tmp_path / order
        data.mkdir()
        _write_csv(frame, data / "telemetry.csv")
        _write_labels(windows, data / "labels.csv")
        backtest_long(data, tmp_path / f"out-{order}", FAST, settings)
        results[order] = pd.read_csv(tmp_path / f"out-{order}" / "machine-1-2.csv")

    pd.testing.assert_frame_equal(results["shuffled"], results["sorted"])


# --- bad input --------------------------------------------------------------------------


@pytest.fixture
def dataset(sample_data, tmp_path) -> Path:
    """A valid long data set: 240 points of 2 metrics, one failure in the scored half.

    Line 1 of telemetry.csv is the header; line 2 + 2 * i + k is point i of metric k.
    """
    values, times, labels = _component_slice(sample_data, "machine-1-2", slice(4500, 4740), MINUTE)
    data = tmp_path / "data"
    data.mkdir()
    long = _to_long("machine-1-2", values.iloc[:, :2], times).sort_values(
        ["timestamp", "metric"], kind="stable"
    )
    _write_csv(long, data / "telemetry.csv")
    windows = [("machine-1-2", times[first], times[last]) for first, last in _label_runs(labels)]
    _write_labels(windows, data / "labels.csv")
    return data


def _replace_line(path: Path, line: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("file_name", "line", "text", "message"),
    [
        (
            "labels.csv",
            2,
            "gpu-9,2024-01-01T02:30:00Z,2024-01-01T02:40:00Z",
            r"labels\.csv, row 2, column 'component': unknown component 'gpu-9'",
        ),
        (
            "labels.csv",
            2,
            "machine-1-2,2024-01-01T02:30:00,2024-01-01T02:40:00Z",
            r"labels\.csv, row 2, column 'start': time '2024-01-01T02:30:00' has no UTC offset",
        ),
        (
            "labels.csv",
            2,
            "machine-1-2,2024-01-01T02:30:00Z,yesterday",
            r"labels\.csv, row 2, column 'end': invalid time 'yesterday'",
        ),
        (
            "labels.csv",
            2,
            "machine-1-2,2024-01-01T02:40:00Z,2024-01-01T02:30:00Z",
            r"labels\.csv, row 2, column 'end': end '2024-01-01T02:30:00Z' is before start",
        ),
        (
            "labels.csv",
            2,
            "machine-1-2,2025-01-01T00:00:00Z,2025-01-01T00:00:00Z",
            (
                r"labels\.csv, row 2: the failure window 2025-01-01T00:00:00\+00:00 to "
                r"2025-01-01T00:00:00\+00:00 of component 'machine-1-2' lies outside its "
                "telemetry"
            ),
        ),
        (
            "labels.csv",
            1,
            "component,begin,end",
            r"labels\.csv, column 'start': missing column 'start'",
        ),
        (
            "telemetry.csv",
            4,
            "2024-01-01T00:01:00Z,machine-1-2,m00,abc",
            r"telemetry\.csv, row 4, column 'value': non-numeric value: 'abc'; 1 rows cannot",
        ),
        (
            "telemetry.csv",
            5,
            "2024-01-01T00:01:00Z,machine-1-2,m01,",
            r"telemetry\.csv, row 5, column 'value': missing or non-finite value",
        ),
        (
            "telemetry.csv",
            3,
            "2024-01-01T00:00:00Z,../evil,m01,0.5",
            (
                r"telemetry\.csv, row 3, column 'component': invalid component name: "
                r"'\.\./evil'; component names must match"
            ),
        ),
        (
            "telemetry.csv",
            6,
            "2024-01-01T00:01:00Z,machine-1-2,m00,0.123",
            (
                r"telemetry\.csv, row 6, column 'value': component 'machine-1-2', metric 'm00' "
                r"at 2024-01-01T00:01:00\+00:00 has the value 0\.123 here and .* in row 4"
            ),
        ),
        (
            "telemetry.csv",
            2,
            "2024-01-01 00:00:00,machine-1-2,m00,0.5",
            r"telemetry\.csv, row 2, column 'timestamp': timestamp '2024-01-01 00:00:00' has",
        ),
        (
            "telemetry.csv",
            1,
            "timestamp,component,name,value",
            r"telemetry\.csv, row 1, column 'metric': missing column 'metric'",
        ),
    ],
)
def test_long_backtest_bad_row_named(dataset, tmp_path, settings, file_name, line, text, message):
    _replace_line(dataset / file_name, line, text)

    with pytest.raises(InputError, match=message):
        backtest_long(dataset, tmp_path / "out", FAST, settings)


def test_long_backtest_missing_labels_file(dataset, tmp_path, settings):
    (dataset / "labels.csv").unlink()

    with pytest.raises(InputError, match=r"labels\.csv: labels file not found; expected labels"):
        backtest_long(dataset, tmp_path / "out", FAST, settings)


def test_long_backtest_two_telemetry_files(dataset, tmp_path, settings):
    pd.read_csv(dataset / "telemetry.csv").to_parquet(dataset / "telemetry.parquet")

    with pytest.raises(InputError, match=r"both telemetry\.csv and telemetry\.parquet exist"):
        backtest_long(dataset, tmp_path / "out", FAST, settings)


def test_long_backtest_no_telemetry_file(dataset, tmp_path, settings):
    (dataset / "telemetry.csv").unlink()

    with pytest.raises(InputError, match=r"no telemetry file; expected telemetry\.csv or"):
        backtest_long(dataset, tmp_path / "out", FAST, settings)


def test_long_backtest_too_few_training_points(dataset, tmp_path, settings):
    with pytest.raises(
        InputError,
        match=r"component 'machine-1-2': 24 of 240 grid points .* expected at least 100",
    ):
        backtest_long(dataset, tmp_path / "out", FAST, settings, split=TrainSplit(fraction=0.1))


def test_long_backtest_no_failure_scored(dataset, tmp_path, settings):
    _write_labels(
        [("machine-1-2", START + 10 * MINUTE, START + 12 * MINUTE)], dataset / "labels.csv"
    )

    with pytest.raises(InputError, match=r"no labeled failure lies in the scored part of any"):
        backtest_long(dataset, tmp_path / "out", FAST, settings)


def test_train_split_rejects_fraction_out_of_range():
    with pytest.raises(ConfigError, match=r"train fraction: expected a number between 0 and 1"):
        TrainSplit(fraction=1.0)


def test_run_backtest_unknown_format(tmp_path, settings):
    with pytest.raises(ConfigError, match=r"unknown backtest format 'csv'; expected one of"):
        run_backtest(settings, tmp_path, "csv", tmp_path / "out", FAST)


def _run_cli(args: list[str], tmp_path: Path) -> int:
    config = tmp_path / "predictor.toml"
    config.write_text("", encoding="utf-8")
    return main(["--config", str(config), "backtest", *args])


def test_cli_unknown_label_component_exits_2(dataset, tmp_path, isolated_env, capsys):
    _replace_line(dataset / "labels.csv", 2, "gpu-9,2024-01-01T02:30:00Z,2024-01-01T02:40:00Z")

    code = _run_cli(
        ["--data", str(dataset), "--format", "long", "--out", str(tmp_path / "out")], tmp_path
    )

    stderr = capsys.readouterr().err
    assert code == 2
    expected = (
        f"predictor backtest: error: {dataset / 'labels.csv'}, row 2, column 'component': "
        "unknown component 'gpu-9'; the telemetry has no rows for it (it has 1 components "
        "such as ['machine-1-2'])"
    )
    assert stderr.strip().splitlines() == [expected]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--format", "smd", "--train-fraction", "0.3"],
            "--train-fraction applies to --format long",
        ),
        (
            ["--format", "long", "--train-fraction", "0.3", "--train-until", "2024-01-01T00:00Z"],
            "give either --train-fraction or --train-until, not both",
        ),
    ],
)
def test_cli_split_options_exit_2(dataset, tmp_path, isolated_env, capsys, args, message):
    code = _run_cli(["--data", str(dataset), "--out", str(tmp_path / "out"), *args], tmp_path)

    stderr = capsys.readouterr().err
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1
    assert message in stderr


def test_cli_fraction_out_of_range_exits_2(dataset, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_cli(
            [
                *("--data", str(dataset), "--format", "long", "--out", str(tmp_path)),
                *("--train-fraction", "1.5"),
            ],
            tmp_path,
        )

    assert exit_info.value.code == 2
    assert "expected a number between 0 and 1, got '1.5'" in capsys.readouterr().err
