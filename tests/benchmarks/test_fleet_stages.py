"""The training, scoring, features and compact stages on a small fleet of real rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "benchmarks" / "run.py"


def _stage(stage: str, work: Path) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            str(RUN),
            "--stage",
            stage,
            "--components",
            "6",
            "--data",
            str(REPO / "data"),
            "--workdir",
            str(work / stage),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    (line,) = done.stdout.splitlines()
    return json.loads(line)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fleet-stages")


def test_training_stage_shares_one_ensemble_per_source(work):
    result = _stage("training", work)

    # The repo's sample contains SMD servers only, so the fleet is one group.
    assert result["ensembles"] == 1
    assert result["forecasters"] == 6
    # components_per_s is rounded to one decimal.
    assert result["components_per_s"] == pytest.approx(6 / result["wall_s"], abs=0.051)


def test_scoring_stage_scores_every_component_once(work):
    result = _stage("scoring", work)

    assert result["scores_written"] == 6
    assert result["wall_s"] > 0
    assert result["first_cycle_s"] > 0


def test_features_stage_compares_with_the_per_component_path(work):
    result = _stage("features", work)

    assert result["features"] == 80
    # 6 components x 20 metrics x 15 grid points of lookback read from the store.
    assert result["rows"] == 6 * 20 * 15
    assert result["peer_sample"] == 6
    assert result["ratio"] == pytest.approx(result["peer_wall_s"] / result["wall_s"], rel=0.05)


def test_compact_stage_merges_day(work):
    result = _stage("compact", work)

    assert result["part_files_before"] == 288
    assert result["markers_before"] == 288
    assert result["part_files_after"] == 1
    assert result["markers_after"] == 1
    assert result["rows"] == 6 * 20 * 288
    assert result["last_hour_rows"] == 6 * 20 * 12
