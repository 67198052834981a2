"""The shipped notebooks run top to bottom against real stores."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from predictor import pipeline
from predictor.config import load_settings

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))

CONFIG = """
[model]
n_estimators = 30

[[sources]]
name = "ec2"
format = "nab"
path = "{path}"
component = "ec2-latency"
metric = "latency_ms"
role = "split"
train_fraction = 0.3
"""


@pytest.fixture
def demo_home(sample_data, tmp_path, isolated_env, monkeypatch):
    csv = tmp_path / "ec2.csv"
    frame = pd.read_csv(sample_data / "nab/realKnownCause/ec2_request_latency_system_failure.csv")
    frame.iloc[:1500].to_csv(csv, index=False)
    config = tmp_path / "predictor.toml"
    config.write_text(CONFIG.format(path=csv), encoding="utf-8")
    monkeypatch.setenv("PREDICTOR_CONFIG", str(config))
    settings = load_settings()
    pipeline.ingest(settings)
    pipeline.train(settings)
    pipeline.score(settings)
    return settings.home


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_runs(path, demo_home, capsys):
    matplotlib.use("Agg")
    notebook = json.loads(path.read_text(encoding="utf-8"))
    namespace: dict = {}

    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}", "exec"), namespace)

    assert str(demo_home) in capsys.readouterr().out
    assert namespace["component"] == "ec2-latency"
    assert namespace["anomaly"].between(0, 1).all()
