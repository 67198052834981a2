"""Shared fixtures: paths to the shipped sample and the optional full data sets."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "data"
CASES = Path(__file__).resolve().parent / "cases"


def _shared_data_dir() -> Path:
    configured = os.environ.get("PREDICTOR_SHARED_DATA")
    return Path(configured) if configured else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The real telemetry sample shipped in data/."""
    return SAMPLE_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The full data sets (PREDICTOR_SHARED_DATA, default ../shared/data), or skip."""
    path = _shared_data_dir()
    if not (path / "README.md").is_file():
        pytest.skip(
            f"full data sets not found at {path}; set PREDICTOR_SHARED_DATA to run this test"
        )
    return path


@pytest.fixture
def isolated_env(tmp_path, monkeypatch) -> Path:
    """Point PREDICTOR_HOME at a temporary folder and clear other PREDICTOR_* settings."""
    home = tmp_path / "home"
    _isolate(monkeypatch, home)
    return home


def _isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    for name in list(os.environ):
        if name.startswith("PREDICTOR_") or name == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PREDICTOR_HOME", str(home))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


# A short scoring run on the first 2,600 rows of the NAB EC2 latency file: they contain the
# first labeled failure (2014-03-14 09:06), and the run raises `critical` around it, so
# the command hook fires at least once.
REPORT_STORE_ROWS = 2600
REPORT_CONFIG = """
[model]
n_estimators = 30

[levels]
elevated = 0.3
high = 0.45
critical = 0.6

[[sources]]
name = "ec2"
format = "nab"
path = "{path}"
component = "ec2-latency"
metric = "latency_ms"
role = "split"
train_fraction = 0.3
labels_format = "nab"
labels_path = "{labels}/combined_labels.json"
windows_path = "{labels}/combined_windows.json"
labels_key = "realKnownCause/ec2_request_latency_system_failure.csv"

[[hooks]]
name = "record-failover"
type = "command"
argv = ["{{python}}", "-m", "predictor.hooks.receiver", "--out", "{{home}}/failover.jsonl"]
on_levels = ["critical"]
cooldown_minutes = 60
"""
# The first rows of SMD machine-1-2: test rows 0-5999 contain three labeled events.
SMD_TRAIN_ROWS = 4000
SMD_TEST_ROWS = 6000


@dataclass(frozen=True)
class ReportInputs:
    """A real risk store and real backtest outputs built once from the shipped sample."""

    home: Path
    config: Path
    smd_data: Path
    smd_backtest: Path
    nab_backtest: Path


def _smd_sample(sample_data: Path, target: Path) -> Path:
    """Copy the first rows of one SMD machine into an SMD layout under ``target``."""
    source = sample_data / "smd"
    for folder in ("train", "test", "test_label"):
        (target / folder).mkdir(parents=True)
    for folder, n_rows in (("train", SMD_TRAIN_ROWS), ("test", SMD_TEST_ROWS)):
        frame = pd.read_csv(source / folder / "machine-1-2.txt.gz", header=None)
        frame.iloc[:n_rows].to_csv(
            target / folder / "machine-1-2.txt.gz", header=False, index=False
        )
    labels = (source / "test_label" / "machine-1-2.txt").read_text(encoding="utf-8").split()
    (target / "test_label" / "machine-1-2.txt").write_text(
        "\n".join(labels[:SMD_TEST_ROWS]) + "\n", encoding="utf-8"
    )
    return target


def _nab_sample(sample_data: Path, target: Path) -> Path:
    """Lay out the shipped EC2 latency file as a NAB corpus (data/, labels/)."""
    (target / "data" / "realKnownCause").mkdir(parents=True)
    name = "ec2_request_latency_system_failure.csv"
    shutil.copy(sample_data / "nab" / "realKnownCause" / name, target / "data" / "realKnownCause")
    shutil.copytree(sample_data / "nab" / "labels", target / "labels")
    return target


@pytest.fixture(scope="session")
def report_inputs(sample_data, tmp_path_factory) -> ReportInputs:
    """Run the pipeline and two small backtests once per session, in a clean environment."""
    from predictor import pipeline
    from predictor.config import load_settings
    from predictor.evaluate.backtest import BacktestConfig
    from predictor.evaluate.runner import run_backtest

    root = tmp_path_factory.mktemp("report")
    csv = root / "ec2.csv"
    frame = pd.read_csv(sample_data / "nab/realKnownCause/ec2_request_latency_system_failure.csv")
    frame.iloc[:REPORT_STORE_ROWS].to_csv(csv, index=False)
    config = root / "predictor.toml"
    config.write_text(
        REPORT_CONFIG.format(path=csv, labels=sample_data / "nab" / "labels"), encoding="utf-8"
    )
    inputs = ReportInputs(
        home=root / "home",
        config=config,
        smd_data=_smd_sample(sample_data, root / "smd"),
        smd_backtest=root / "backtest-smd",
        nab_backtest=root / "backtest-nab",
    )

    with pytest.MonkeyPatch.context() as patch:
        _isolate(patch, inputs.home)
        patch.setenv("PREDICTOR_CONFIG", str(config))
        settings = load_settings()
        pipeline.ingest(settings)
        pipeline.train(settings)
        pipeline.score(settings)
        small = BacktestConfig(n_estimators=20, max_train_rows=2000)
        run_backtest(settings, inputs.smd_data, "smd", inputs.smd_backtest, small)
        nab_data = _nab_sample(sample_data, root / "nab")
        run_backtest(settings, nab_data, "nab", inputs.nab_backtest, small)
    return inputs


@pytest.fixture
def report_env(report_inputs, isolated_env, monkeypatch) -> ReportInputs:
    """Point PREDICTOR_HOME and PREDICTOR_CONFIG at the session's risk store."""
    monkeypatch.setenv("PREDICTOR_HOME", str(report_inputs.home))
    monkeypatch.setenv("PREDICTOR_CONFIG", str(report_inputs.config))
    return report_inputs
