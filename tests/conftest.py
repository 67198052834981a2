"""Shared fixtures: paths to the shipped sample and the optional full data sets."""

from __future__ import annotations

import os
from pathlib import Path

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
    for name in list(os.environ):
        if name.startswith("PREDICTOR_") or name == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("PREDICTOR_HOME", str(home))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return home
