from __future__ import annotations

import json
import subprocess
import sys


def _receive(out, text):
    return subprocess.run(
        [sys.executable, "-m", "predictor.hooks.receiver", "--out", str(out)],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_receiver_appends_one_line_per_payload(tmp_path):
    out = tmp_path / "new" / "folder" / "calls.jsonl"
    first = {"component": "gpu-1", "level": "critical"}
    second = {"component": "gpu-2", "level": "critical", "drivers": [{"metric": "temp"}]}

    results = [_receive(out, json.dumps(first, indent=2)), _receive(out, json.dumps(second))]

    assert [result.returncode for result in results] == [0, 0]
    lines = out.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [first, second]


def test_receiver_rejects_invalid_json(tmp_path):
    out = tmp_path / "calls.jsonl"

    result = _receive(out, "{not json")

    assert result.returncode == 2
    assert result.stderr.startswith("receiver: invalid JSON on stdin:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_receiver_rejects_non_object(tmp_path):
    out = tmp_path / "calls.jsonl"

    result = _receive(out, "[1, 2]")

    assert result.returncode == 2
    assert result.stderr.strip() == "receiver: expected a JSON object on stdin, got list"
    assert not out.exists()
