"""Command-line behaviour: user mistakes exit with code 2 and one line, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def _run(args: list[str], cwd: Path, env_home: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "predictor.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PREDICTOR_HOME": str(env_home)},
    )


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["ingest", "missing.csv", "--format", "long"], None, "missing.csv"),
        (["ingest"], "[model]\nwindow_step = 3\n", "unknown key 'window_step'"),
        (["ingest"], "[levels]\ncritical = 2.0\n", "critical=2.0"),
        (["ingest"], "[model\n", "invalid TOML"),
        (
            ["ingest", "--source", "nope"],
            '[[sources]]\nname = "a"\nformat = "long"\npath = "a.csv"\n',
            "unknown source 'nope'",
        ),
        (["score"], "", "run `predictor train` first"),
        (["ingest", "x.csv", "--format", "nab"], None, "--component is required"),
    ],
)
def test_user_mistake_exits_2_with_one_line(tmp_path, args, config, message):
    config_path = tmp_path / "predictor.toml"
    config_path.write_text(config if config is not None else "", encoding="utf-8")

    result = _run(["--config", str(config_path), *args], tmp_path, tmp_path / "home")

    assert result.returncode == 2, result.stderr
    error_lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(error_lines) == 1, result.stderr
    assert message in error_lines[0]
    assert "Traceback" not in result.stderr


def test_bad_option_value_exits_2(tmp_path):
    result = _run(["score", "--until", "yesterday"], tmp_path, tmp_path / "home")

    assert result.returncode == 2
    assert "invalid time 'yesterday'" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_command_prints_help_and_exits_2(tmp_path):
    result = _run([], tmp_path, tmp_path / "home")

    assert result.returncode == 2
    assert "usage: predictor" in result.stderr
