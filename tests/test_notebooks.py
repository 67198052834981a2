"""The shipped notebooks run top to bottom against real stores and a real backtest."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.figure import Figure

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def _run_notebook(path: Path) -> tuple[dict, list]:
    """Execute the code cells in order; return the namespace and what they displayed.

    ``display`` is an IPython builtin in Jupyter; here it records its argument, so the
    test can check the figures and tables a reader gets.
    """
    matplotlib.use("Agg")
    notebook = json.loads(path.read_text(encoding="utf-8"))
    displayed: list = []
    namespace: dict = {"display": displayed.append}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), path.name, "exec"), namespace)
    return namespace, displayed


def _check_explore_scores(namespace, displayed, inputs, output):
    assert str(inputs.home) in output
    assert namespace["component"] == "ec2-latency"
    assert namespace["anomaly"].between(0, 1).all()


def _check_failure_risk_analysis(namespace, displayed, inputs, output):
    results = namespace["results"]
    assert results.path == inputs.smd_backtest
    assert results.series() == ["machine-1-2"]

    titles = [figure.axes[0].get_title() for figure in displayed if isinstance(figure, Figure)]
    assert any(title.startswith("SMD: ensemble") for title in titles)
    assert any(title.startswith("machine-1-2: ensemble anomaly score") for title in titles)
    assert any(title.startswith("Lead time") for title in titles)
    assert any(title.startswith("ec2-latency: failure-risk") for title in titles)
    assert "no calibration section" in output

    leads = namespace["leads"]
    assert len(leads) == 3
    expected = results.summary["per_entity"]["machine-1-2"]["ensemble"]["median_lead_rows"]
    assert np.nanmedian(leads["lead_rows"]) == expected

    store_leads = namespace["store_leads"]
    assert store_leads["component"].tolist() == ["ec2-latency"] * 3


CHECKS = {
    "explore_scores.ipynb": _check_explore_scores,
    "failure_risk_analysis.ipynb": _check_failure_risk_analysis,
}


def test_every_notebook_has_checks():
    assert sorted(CHECKS) == [path.name for path in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_runs(path, report_env, monkeypatch, capsys):
    monkeypatch.setenv("PREDICTOR_BACKTEST_DIR", str(report_env.smd_backtest))

    namespace, displayed = _run_notebook(path)

    CHECKS[path.name](namespace, displayed, report_env, capsys.readouterr().out)


def _cells_with_outputs(notebook: dict) -> list[str]:
    """Return the ids (or positions) of code cells that carry outputs or a count."""
    return [
        str(cell.get("id", number))
        for number, cell in enumerate(notebook["cells"])
        if cell["cell_type"] == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))

    assert _cells_with_outputs(notebook) == []


def test_output_check_finds_executed_cell():
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "a", "source": []},
            {"cell_type": "code", "id": "b", "execution_count": None, "outputs": []},
            {
                "cell_type": "code",
                "id": "c",
                "execution_count": 3,
                "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n"]}],
            },
            {"cell_type": "code", "id": "d", "execution_count": 4, "outputs": []},
        ]
    }

    assert _cells_with_outputs(notebook) == ["c", "d"]
