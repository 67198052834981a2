from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "benchmarks" / "run.py"


def _run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, str(RUN), *args], capture_output=True, text=True, timeout=timeout
    )


def _run_module():
    spec = importlib.util.spec_from_file_location("benchmarks_run_under_test", RUN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_hooks_stage_prints_one_json_line(tmp_path):
    done = _run(
        "--stage",
        "hooks",
        "--components",
        "20",
        "--data",
        str(REPO / "data"),
        "--workdir",
        str(tmp_path / "work"),
    )

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert list(result)[:4] == ["stage", "components", "wall_s", "peak_rss_mib"]
    assert result["stage"] == "hooks"
    assert result["components"] == 20
    assert result["wall_s"] > 0
    assert result["peak_rss_mib"] > 10
    assert result["events"] == 20
    assert result["events_per_s"] == pytest.approx(20 / result["wall_s"], rel=0.01)
    assert result["scores_written"] == 20
    assert result["actions_queued"] == sum(result["actions_by_status"].values())
    assert set(result["machine"]) == {"cpu_count", "cpu_model", "memory_mib"}
    assert f"data {REPO / 'data'}" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--components", "5"], "the following arguments are required: --stage"),
        (["--stage", "hooks", "--components", "0"], "expected a positive whole number"),
        (["--stage", "hooks", "--components", "many"], "expected a positive whole number"),
        (["--stage", "warp", "--components", "5"], "unknown stage 'warp'; expected one of"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message):
    done = _run(*args, timeout=60)

    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert message in done.stderr


def test_stage_without_module_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    run = _run_module()
    (tmp_path / "benchmarks" / "stages").mkdir(parents=True)
    monkeypatch.setattr(run, "REPO", tmp_path)

    with pytest.raises(SystemExit) as exited:
        run.main(["--stage", "ingest", "--components", "5"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert "stage 'ingest' has no module yet; expected" in err
    assert str(tmp_path / "benchmarks" / "stages" / "ingest.py") in err


def test_data_folder_without_servers_exits_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()

    done = _run(
        "--stage",
        "forecast",
        "--components",
        "5",
        "--data",
        str(empty),
        "--workdir",
        str(tmp_path / "work"),
        timeout=120,
    )

    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith(
        f"run.py: stage 'forecast': {empty}: no source servers found"
    )
