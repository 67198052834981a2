"""Fixtures for the detector tests: trap-case files turned into grid features."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from predictor.features import build_grid, make_features

CASES = Path(__file__).resolve().parent.parent / "cases"


def wide_case_features(name: str, extra_columns: tuple[str, ...], window_steps: int = 12):
    """Read a wide trap-case CSV and return (raw frame, feature frame) on its 1-minute grid.

    ``extra_columns`` are columns that are labels or splits, not metrics.
    """
    raw = pd.read_csv(CASES / name)
    metrics = [c for c in raw.columns if c not in ("ts", "component", *extra_columns)]
    rows = raw.melt(id_vars=["ts"], value_vars=metrics, var_name="metric", value_name="value")
    rows["timestamp"] = pd.to_datetime(rows.pop("ts"), utc=True)
    grid = build_grid(rows, 60.0)
    assert len(grid) == len(raw), "case rows are expected on a gap-free 1-minute grid"
    return raw, make_features(grid, window_steps)


@pytest.fixture(scope="module")
def constant_training_case():
    return wide_case_features("R10-constant-training-window.csv", ("split",))


@pytest.fixture(scope="module")
def outage_case():
    return wide_case_features("R13-sustained-outage.csv", ("in_outage",))


@pytest.fixture(scope="module")
def quantized_case():
    return wide_case_features("R14-quantized-gauges.csv", ())
