"""Labeled failures from NAB label files and SMD/ASD row labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictor.config import SourceConfig
from predictor.exceptions import InputError
from predictor.telemetry import read_labels

NAB_KEY = "realKnownCause/machine_temperature_system_failure.csv"


def _nab_source(sample_data: Path, **options) -> SourceConfig:
    nab = sample_data / "nab"
    return SourceConfig(
        name="nab-temp", format="nab", component="machine-temperature",
        path=nab / "realKnownCause" / "machine_temperature_system_failure.csv",
        labels_format="nab", labels_path=nab / "labels" / "combined_labels.json",
        windows_path=nab / "labels" / "combined_windows.json", **options,
    )


def _rows_source(labels_path: Path, **options) -> SourceConfig:
    return SourceConfig(
        name="smd", format="matrix", path=Path("machine.txt.gz"), component="smd-machine",
        metric_names=("cpu_r",), start="2024-01-01T00:00:00Z", step_seconds=60,
        labels_format="rows", labels_path=labels_path, **options,
    )


def test_nab_labels_in_their_windows(sample_data):
    failures = read_labels(_nab_source(sample_data, labels_key=NAB_KEY))
    labels = json.loads((sample_data / "nab/labels/combined_labels.json").read_text())[NAB_KEY]

    assert [f.failure_time for f in failures] == pd.to_datetime(labels, utc=True).tolist()
    assert {f.component for f in failures} == {"machine-temperature"}
    for failure in failures:
        assert failure.window_start <= failure.failure_time <= failure.window_end
    assert failures[0].window_start == pd.Timestamp("2013-12-10T06:25:00Z")
    assert failures[0].window_end == pd.Timestamp("2013-12-12T05:35:00Z")


def test_nab_key_defaults_to_file_path(sample_data):
    with_key = read_labels(_nab_source(sample_data, labels_key=NAB_KEY))

    assert read_labels(_nab_source(sample_data)) == with_key


def test_nab_unknown_key_rejected(sample_data):
    with pytest.raises(InputError, match=r"no entry for labels_key 'realKnownCause/absent\.csv'"):
        read_labels(_nab_source(sample_data, labels_key="realKnownCause/absent.csv"))


def test_nab_label_outside_windows_rejected(tmp_path):
    labels = tmp_path / "labels.json"
    windows = tmp_path / "windows.json"
    labels.write_text(json.dumps({"k": ["2014-01-05 00:00:00"]}))
    windows.write_text(json.dumps({"k": [["2014-01-01 00:00:00", "2014-01-02 00:00:00"]]}))
    source = SourceConfig(name="n", format="nab", path=Path("x.csv"), component="c",
                          labels_format="nab", labels_path=labels, windows_path=windows,
                          labels_key="k")
    with pytest.raises(InputError, match="label '2014-01-05 00:00:00\\+00:00' lies in no"):
        read_labels(source)


def test_row_labels_one_failure_per_run(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("0\n0\n1\n1\n0\n1\n")
    failures = read_labels(_rows_source(path, row_offset=10))

    start = pd.Timestamp("2024-01-01T00:00:00Z")
    assert [f.failure_time for f in failures] == [
        start + pd.Timedelta(minutes=12), start + pd.Timedelta(minutes=15),
    ]
    assert failures[0].window_start == start + pd.Timedelta(minutes=12) - pd.Timedelta(hours=1)
    assert failures[0].window_end == start + pd.Timedelta(minutes=13)
    assert failures[1].window_end == failures[1].failure_time


def test_row_labels_match_smd_segments(sample_data):
    path = sample_data / "smd" / "test_label" / "machine-1-2.txt"
    failures = read_labels(_rows_source(path))
    flags = np.loadtxt(path, dtype=int)
    # Runs counted independently: a run starts where a 1 follows a 0 or the file start.
    run_starts = np.flatnonzero((flags == 1) & (np.concatenate([[0], flags[:-1]]) == 0))
    start = pd.Timestamp("2024-01-01T00:00:00Z")

    assert len(failures) == len(run_starts)
    assert [f.failure_time for f in failures] == [
        start + pd.Timedelta(minutes=int(i)) for i in run_starts
    ]


def test_row_labels_reject_other_values(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("0\n1\n2\n")
    with pytest.raises(InputError, match=r"labels\.txt, row 3: expected 0 or 1, got '2'"):
        read_labels(_rows_source(path))


def test_missing_label_file(tmp_path):
    with pytest.raises(InputError, match=r"label file 'absent\.txt' not found"):
        read_labels(_rows_source(tmp_path / "absent.txt"))


def test_no_labels_configured(tmp_path):
    source = SourceConfig(name="n", format="nab", path=tmp_path / "x.csv", component="c")

    assert read_labels(source) == []
