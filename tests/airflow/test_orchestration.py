"""Shards, scoring times and run summaries of predictor.orchestration."""

from __future__ import annotations

import pandas as pd
import pytest

from predictor.exceptions import ConfigError
from predictor.orchestration import (
    parse_time,
    split_group_shards,
    split_shards,
    summarize_scoring,
    summarize_training,
    training_run_key,
)

NAMES = ["gpu-node-07", "router-2", "gpu-node-03", "replica-a", "gpu-node-11"]


def test_split_shards_is_order_independent():
    shards = split_shards(NAMES, 2)

    assert shards == [["gpu-node-03", "gpu-node-07"], ["gpu-node-11", "replica-a"], ["router-2"]]
    assert split_shards(reversed(NAMES), 2) == shards
    assert split_shards([*NAMES, "router-2"], 2) == shards


def test_split_shards_covers_every_component_once():
    for size in (1, 2, 3, 5, 50):
        shards = split_shards(NAMES, size)
        flat = [name for shard in shards for name in shard]

        assert flat == sorted(NAMES)
        assert all(1 <= len(shard) <= size for shard in shards)


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "2"])
def test_split_shards_rejects_bad_size(size):
    with pytest.raises(ConfigError, match="shard_size: expected a positive integer"):
        split_shards(NAMES, size)


def test_group_shards_never_mix_groups():
    groups = {
        "predictor-gpu": ["gpu-node-07", "gpu-node-03", "gpu-node-11"],
        "predictor-edge": ["router-2", "replica-a"],
    }

    shards = split_group_shards(groups, 2)

    assert shards == [
        ["replica-a", "router-2"],
        ["gpu-node-03", "gpu-node-07"],
        ["gpu-node-11"],
    ]
    assert split_shards(NAMES, 2)[1] == ["gpu-node-11", "replica-a"]


def test_parse_time_needs_offset():
    assert parse_time("2014-03-21T03:41:00+01:00", "until") == pd.Timestamp("2014-03-21T02:41:00Z")
    assert parse_time(None, "until") is None
    assert parse_time("", "until") is None
    with pytest.raises(ConfigError, match="until: expected a time with a UTC offset"):
        parse_time("2014-03-21T03:41:00", "until")
    with pytest.raises(ConfigError, match="until: expected an ISO 8601 time"):
        parse_time("yesterday", "until")


def _result(index: int, components: list[str], failed: dict | None = None) -> dict:
    return {
        "index": index,
        "components": components,
        "until": "2014-03-21T03:41:00+00:00",
        "scores_written": 10 * len(components),
        "components_scored": len(components) - len(failed or {}),
        "hook_calls": 1,
        "failed_components": failed or {},
    }


def test_summary_names_missing_and_failed_shards():
    shards = [
        {"index": i, "components": names, "until": "2014-03-21T03:41:00+00:00"}
        for i, names in enumerate(split_shards(NAMES, 2))
    ]
    results = [
        _result(0, shards[0]["components"]),
        None,
        _result(2, shards[2]["components"], {"router-2": "no rows"}),
    ]

    summary = summarize_scoring(shards, results)

    assert summary["shards"] == 3
    assert [shard["index"] for shard in summary["failed_shards"]] == [1, 2]
    assert summary["failed_shards"][0]["components"] == ["gpu-node-11", "replica-a"]
    assert summary["failed_shards"][1]["errors"] == {"router-2": "no rows"}
    assert summary["scores_written"] == 30
    assert summary["hook_calls"] == 2


def test_summary_of_clean_run_lists_no_failures():
    shards = [{"index": 0, "components": ["router-2"], "until": "2014-03-21T03:41:00+00:00"}]

    summary = summarize_scoring(shards, [_result(0, ["router-2"])])

    assert summary["failed_shards"] == []
    assert summary["components_scored"] == 1


def _group_result(index: int, group: str, version: str | None, decision: str, reused=False):
    return {
        "index": index,
        "group": group,
        "components": [group],
        "run_id": None if version is None else f"run-{index}",
        "model_version": version,
        "decision": decision,
        "reused": reused,
    }


def test_training_summary_names_failed_groups():
    groups = [
        {"index": i, "group": name, "components": [name]}
        for i, name in enumerate(["fleet-gpu", "fleet-nic", "fleet-psu", "fleet-fan"])
    ]
    results = [
        _group_result(0, "fleet-gpu", "fleet-gpu/3", "promoted"),
        None,
        _group_result(2, "fleet-psu", None, "no training data"),
        _group_result(3, "fleet-fan", "fleet-fan/2", "rejected", reused=True),
    ]

    summary = summarize_training(groups, results)

    assert summary["groups"] == 4
    assert summary["failed_groups"] == [
        {"index": 1, "group": "fleet-nic", "components": ["fleet-nic"]}
    ]
    assert summary["registered"] == ["fleet-gpu/3", "fleet-fan/2"]
    assert (summary["promoted"], summary["rejected"], summary["reused"]) == (1, 1, 1)
    assert summary["without_data"] == ["fleet-psu"]


def test_training_run_key_changes_with_params():
    key = training_run_key("model_training", "2024-06-02T00:00:00+00:00", None, None, None)
    other = training_run_key("model_training", "2024-06-02T00:00:00+00:00", None, None, 7.0)

    assert key == "model_training|2024-06-02T00:00:00+00:00|None|None|None"
    assert other != key
