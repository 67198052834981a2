"""Fixtures for the telemetry tests: settings under tmp_path and slices of real files."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

from predictor.config import Settings, load_settings


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Build Settings with PREDICTOR_HOME under tmp_path and the given components."""
    config = tmp_path / "predictor.toml"
    config.write_text("# components come from overrides\n")

    def build(components: list[dict] | None = None) -> Settings:
        return load_settings(
            config,
            environ={"PREDICTOR_HOME": str(tmp_path / "home")},
            overrides={"components": components or []},
        )

    return build


@pytest.fixture
def nab_slice(sample_data: Path, tmp_path: Path) -> Path:
    """The header and first 300 rows of the shipped NAB machine-temperature file."""
    source = sample_data / "nab" / "realKnownCause" / "machine_temperature_system_failure.csv"
    lines = source.read_text().splitlines(keepends=True)[:301]
    target = tmp_path / "machine_temperature_slice.csv"
    target.write_text("".join(lines))
    return target


@pytest.fixture
def smd_slice(sample_data: Path, tmp_path: Path) -> Path:
    """The first 200 rows of the shipped SMD machine-1-2 test file, gzipped."""
    with gzip.open(sample_data / "smd" / "test" / "machine-1-2.txt.gz", "rt") as handle:
        lines = [next(handle) for _ in range(200)]
    target = tmp_path / "machine-1-2-slice.txt.gz"
    with gzip.open(target, "wt") as handle:
        handle.writelines(lines)
    return target


@pytest.fixture
def smd_metric_names(sample_data: Path) -> Path:
    """The 38 SMD metric names, one per line, in column order."""
    return sample_data / "smd" / "metric_names.txt"
