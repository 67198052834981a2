"""The bad-input corpus: every broken file either fails with a located error or is
ingested with its offending rows quarantined, and every row read is accounted for.

The table of expected outcomes is ``bad_input/cases.csv``: one line per file and source
options, with the counts of an ingest or a regular expression for the error.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from predictor.config import SourceConfig
from predictor.exceptions import InputError
from predictor.telemetry import TelemetryStore, ingest_source

CORPUS = Path(__file__).resolve().parent / "bad_input"
REPO = Path(__file__).resolve().parents[2]


def _cases() -> list[dict[str, str]]:
    with (CORPUS / "cases.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _case_id(case: dict[str, str]) -> str:
    options = case["options"].replace(";", ",") if case["options"] else "default"
    return f"{Path(case['file']).name}[{options}]"


def _source(case: dict[str, str]) -> SourceConfig:
    options: dict[str, object] = {}
    for item in filter(None, case["options"].split(";")):
        key, _, value = item.partition("=")
        options[key] = (value,) if key == "metric_names" else value
    path = (CORPUS / case["file"]).resolve()
    return SourceConfig(name=path.stem, format=case["format"], path=path, **options)


def _reasons(text: str) -> dict[str, int]:
    pairs = (item.rpartition("=") for item in filter(None, text.split("|")))
    return {reason: int(count) for reason, _, count in pairs}


CASES = _cases()


def test_corpus_files_all_listed():
    listed = {Path(case["file"]).name for case in CASES}
    present = {path.name for path in CORPUS.iterdir() if path.name != "cases.csv"}

    assert present <= listed, f"files without an expected outcome: {present - listed}"


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_bad_input_case(case, make_settings):
    settings = make_settings()
    source = _source(case)
    store = TelemetryStore(settings.telemetry_dir)

    if case["outcome"] == "error":
        with pytest.raises(InputError, match=case["expected"]) as caught:
            ingest_source(source, settings, store)
        message = str(caught.value)
        assert message.startswith(str(source.path))
        assert "\n" not in message
        assert store.read().empty
        return

    summary = ingest_source(source, settings, store)

    expected = [int(case[key]) for key in ("read", "written", "quarantined", "duplicates")]
    assert [summary.rows_read, summary.written, summary.quarantined, summary.duplicates] == (
        expected
    )
    assert summary.written + summary.quarantined + summary.duplicates == summary.rows_read
    assert summary.reasons == _reasons(case["expected"])
    assert len(store.read()) == summary.written
    if summary.quarantined:
        quarantine = pd.read_csv(summary.quarantine_file, keep_default_na=False)
        assert len(quarantine) == summary.quarantined
        assert quarantine["reason"].value_counts().to_dict() == summary.reasons
    else:
        assert summary.quarantine_file is None


def test_mixed_offsets_stored_in_utc(make_settings):
    settings = make_settings()
    source = _source({"file": "mixed_offsets.csv", "format": "long", "options": ""})

    ingest_source(source, settings)
    stored = TelemetryStore(settings.telemetry_dir).read()

    assert stored["timestamp"].tolist() == list(
        pd.date_range("2026-11-01T00:00Z", periods=4, freq="min")
    )
    assert stored["value"].tolist() == [60.0, 61.0, 62.0, 63.0]


def test_repeated_hour_in_true_order(make_settings):
    settings = make_settings()
    source = _source(
        {
            "file": "dst_repeated_hour.csv",
            "format": "wide",
            "options": "component=gpu-1;timezone=Europe/Berlin;order_column=seq",
        }
    )

    ingest_source(source, settings)
    stored = TelemetryStore(settings.telemetry_dir).read()

    # seq 0..7 are 20 minutes apart in real time: 23:40 UTC, then 00:00 ... 02:00 UTC.
    assert stored["timestamp"].tolist() == list(
        pd.date_range("2026-10-24T23:40Z", periods=8, freq="20min")
    )
    assert stored["value"].tolist() == [60.0 + seq for seq in range(8)]


@pytest.mark.parametrize(
    ("file_name", "file_format", "message"),
    [
        ("missing_value_column.csv", "long", r"row 1, column 'value': missing column 'value'"),
        ("decimal_comma.csv", "long", r"row 2, column 'value': value '60,5' uses a decimal"),
        ("ragged_row.csv", "long", r"row 4: expected 4 fields as in the header, got 5"),
        ("openmetrics_invalid_line.om", "openmetrics", r"row 3: not a valid OpenMetrics line"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, file_name, file_format, message):
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("PREDICTOR_")
    }
    environment["PREDICTOR_HOME"] = str(tmp_path / "home")
    environment["PYTHONPATH"] = str(REPO)
    config = tmp_path / "predictor.toml"
    config.write_text("", encoding="utf-8")

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "predictor.cli",
            "--config",
            str(config),
            "ingest",
            str(CORPUS / file_name),
            "--format",
            file_format,
            "--component",
            "gpu-1",
        ],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )

    assert completed.returncode == 2
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert re.search(re.escape(str(CORPUS / file_name)) + ".*" + message, lines[0])
