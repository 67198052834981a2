"""`predictor report` writes one self-contained HTML page; user mistakes exit 2."""

from __future__ import annotations

import base64
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression

from predictor.cli import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EXTERNAL_REFERENCE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)
IMAGE = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')
HORIZON_ROWS = 60
FIT_FRACTION = 0.8


def _report(tmp_path, capsys, *args: str) -> tuple[int, str, str]:
    out = tmp_path / "report.html"
    code = main(["report", "--out", str(out), *args])
    captured = capsys.readouterr()
    text = out.read_text(encoding="utf-8") if out.exists() else ""
    return code, text, captured.err


def _add_calibration(folder, data) -> dict:
    """Calibrate the ensemble's scores out of time and store the section in summary.json.

    Isotonic regression maps the score to "a labeled row within the next HORIZON_ROWS
    rows", fitted on the first FIT_FRACTION of the test rows and evaluated on the rest,
    in the layout the calibration step writes.
    """
    scores = pd.read_csv(folder / "machine-1-2.csv")["anomaly_score"].to_numpy()
    labels = np.loadtxt(data / "test_label" / "machine-1-2.txt", dtype=int)
    ahead = pd.Series(labels[::-1]).rolling(HORIZON_ROWS + 1, min_periods=1).max()
    target = ahead.to_numpy()[::-1]
    split = int(len(scores) * FIT_FRACTION)
    model = IsotonicRegression(out_of_bounds="clip").fit(scores[:split], target[:split])
    predicted, observed = model.predict(scores[split:]), target[split:]
    base_rate = float(target[:split].mean())

    edges = np.linspace(0, 1, 11)
    bins = np.clip(np.digitize(predicted, edges[1:-1]), 0, 9)
    reliability = [
        {
            "bin_low": float(edges[i]),
            "bin_high": float(edges[i + 1]),
            "count": int((bins == i).sum()),
            "mean_predicted": float(predicted[bins == i].mean()) if (bins == i).any() else None,
            "observed_rate": float(observed[bins == i].mean()) if (bins == i).any() else None,
        }
        for i in range(10)
    ]
    brier = float(np.mean((predicted - observed) ** 2))
    brier_base = float(np.mean((base_rate - observed) ** 2))
    calibration = {
        "method": "isotonic",
        "fit_fraction": FIT_FRACTION,
        "horizon_rows": HORIZON_ROWS,
        "per_entity": {
            "machine-1-2": {
                "brier": brier,
                "brier_base_rate": brier_base,
                "base_rate": base_rate,
                "n_eval": len(observed),
            }
        },
        "mean": {"brier": brier, "brier_base_rate": brier_base},
        "reliability": reliability,
    }
    path = folder / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    summary["calibration"] = calibration
    path.write_text(json.dumps(summary), encoding="utf-8")
    return calibration


def _figure_ids(text: str) -> list[str]:
    return re.findall(r'<figure id="([^"]+)">', text)


def _check_self_contained(text: str) -> None:
    assert EXTERNAL_REFERENCE.search(text) is None
    assert "<script" not in text.lower()
    assert "<link" not in text.lower()
    images = IMAGE.findall(text)
    assert len(images) == len(_figure_ids(text))
    for encoded in images:
        assert base64.b64decode(encoded).startswith(PNG_SIGNATURE)


def test_report_on_smd_backtest_and_store(report_env, tmp_path, capsys):
    code, text, _ = _report(tmp_path, capsys, "--backtest", str(report_env.smd_backtest))

    assert code == 0
    _check_self_contained(text)
    assert _figure_ids(text) == [
        "comparison",
        "scores-machine-1-2",
        "lead-times",
        "risk-ec2-latency",
    ]
    summary = json.loads((report_env.smd_backtest / "summary.json").read_text())
    assert "<th>auc_pr</th>" in text
    assert f"<td>{summary['mean']['ensemble']['auc_pr']:.3f}</td>" in text
    assert f"<td>{summary['mean']['l2_norm']['best_f1']:.3f}</td>" in text
    assert "summary.json has no calibration section" in text
    assert "Hook calls" in text
    assert "late by" in text or "warned" in text


def test_report_with_calibration(report_env, tmp_path, capsys):
    folder = shutil.copytree(report_env.smd_backtest, tmp_path / "backtest")
    calibration = _add_calibration(folder, report_env.smd_data)

    code, text, _ = _report(tmp_path, capsys, "--backtest", str(folder))

    assert code == 0
    _check_self_contained(text)
    assert "reliability" in _figure_ids(text)
    assert "no calibration section" not in text
    assert f"<td>{calibration['mean']['brier']:.4f}</td>" in text
    assert "<th>observed_rate</th>" in text


def test_report_on_nab_backtest(report_env, tmp_path, capsys):
    code, text, _ = _report(tmp_path, capsys, "--backtest", str(report_env.nab_backtest))

    assert code == 0
    _check_self_contained(text)
    assert "scores-realKnownCause-ec2_request_latency_system_failure-csv" in _figure_ids(text)
    assert "<th>reward_low_FP</th>" in text
    summary = json.loads((report_env.nab_backtest / "summary.json").read_text())
    assert f"<td>{summary['detectors']['ensemble']['standard']:.2f}</td>" in text


def test_report_of_store_only(report_env, tmp_path, capsys):
    code, text, _ = _report(tmp_path, capsys)

    assert code == 0
    _check_self_contained(text)
    assert _figure_ids(text) == ["risk-ec2-latency"]
    assert "Backtest" not in text


def test_report_without_store_notes_it(report_inputs, isolated_env, tmp_path, capsys):
    code, text, _ = _report(tmp_path, capsys, "--backtest", str(report_inputs.smd_backtest))

    assert code == 0
    assert "has no scores yet" in text
    assert not (isolated_env / "risk.db").exists()


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_backtest_folder_exits_2(isolated_env, tmp_path, capsys):
    missing = tmp_path / "nope"

    code, _, err = _report(tmp_path, capsys, "--backtest", str(missing))

    assert code == 2
    assert f"{missing}: backtest output folder not found" in _error_line(err)


def test_missing_summary_exits_2(isolated_env, tmp_path, capsys):
    folder = tmp_path / "empty"
    folder.mkdir()

    code, _, err = _report(tmp_path, capsys, "--backtest", str(folder))

    assert code == 2
    assert f"{folder / 'summary.json'}: summary.json not found" in _error_line(err)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"format": "smd", "data": "x"}', "missing key 'comparison'"),
    ],
)
def test_malformed_summary_exits_2(isolated_env, tmp_path, capsys, content, message):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "summary.json").write_text(content, encoding="utf-8")

    code, _, err = _report(tmp_path, capsys, "--backtest", str(folder))

    assert code == 2
    line = _error_line(err)
    assert str(folder / "summary.json") in line
    assert message in line


def test_nothing_to_report_exits_2(isolated_env, tmp_path, capsys):
    code, _, err = _report(tmp_path, capsys)

    assert code == 2
    assert "nothing to report: no --backtest given" in _error_line(err)


def test_missing_out_folder_exits_2(report_inputs, isolated_env, tmp_path, capsys):
    out = tmp_path / "missing" / "report.html"

    code = main(["report", "--out", str(out), "--backtest", str(report_inputs.smd_backtest)])

    assert code == 2
    assert f"folder {str(out.parent)!r} not found" in _error_line(capsys.readouterr().err)


def test_data_without_backtest_exits_2(isolated_env, tmp_path, capsys):
    code, _, err = _report(tmp_path, capsys, "--data", str(tmp_path))

    assert code == 2
    assert "--data is only valid with --backtest" in _error_line(err)
