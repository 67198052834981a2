"""Model lifecycle on real NAB telemetry: skops files, the quality gate, rollback,
shadow scoring and fallbacks, with a real MLflow store and a real SQLite risk store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio

from predictor import cli, pipeline
from predictor.config import load_settings
from predictor.exceptions import ConfigError, ModelLifecycleError, UntrustedModelError
from predictor.lifecycle import registry
from predictor.lifecycle.serialization import load_fleet, save_fleet
from predictor.scoring import score_component
from predictor.training import train_fleet

NAB = "nab/realKnownCause/ec2_request_latency_system_failure.csv"
LABELS = "nab/labels"
NAME = "predictor-fleet"

CONFIG = """
[model]
n_estimators = 30

[lifecycle]
holdout_days = 2.0

[[sources]]
name = "ec2"
format = "nab"
path = "{data}/{nab}"
component = "ec2-latency"
metric = "latency_ms"
role = "split"
train_fraction = 0.3
labels_format = "nab"
labels_path = "{data}/{labels}/combined_labels.json"
windows_path = "{data}/{labels}/combined_windows.json"
labels_key = "realKnownCause/ec2_request_latency_system_failure.csv"

[[hooks]]
name = "failover"
type = "webhook"
url = "http://127.0.0.1:9/unused"
on_levels = ["high", "critical"]
cooldown_minutes = 0
"""

# The challengers train up to this time; their 2-day holdout contains the labeled failure
# of 2014-03-14 09:06, so the gate compares AUC-PR.
UNTIL = pd.Timestamp("2014-03-15T00:00Z")


def _settings(sample_data: Path, tmp_path: Path, extra: str = ""):
    config = tmp_path / "predictor.toml"
    text = CONFIG.format(data=sample_data, nab=NAB, labels=LABELS) + extra
    config.write_text(text, encoding="utf-8")
    return load_settings(config)


def _worse(settings):
    """Settings of a genuinely worse model: histogram detector alone, no smoothing."""
    model = dataclasses.replace(settings.model, members=("hbos",), smoothing_span=1)
    return dataclasses.replace(settings, model=model)


@pytest.fixture
def champion(sample_data, tmp_path, isolated_env):
    """Settings with the real file ingested and version 1 trained as champion."""
    settings = _settings(sample_data, tmp_path)
    pipeline.ingest(settings)
    result = pipeline.train(settings)
    assert [g.decision for g in result.groups] == ["promoted"]
    return settings


@pytest.fixture
def rejected(champion):
    """Version 2, trained on 0.4 days with a weak detector, rejected by the gate."""
    result = pipeline.train(_worse(champion), until=UNTIL, lookback_days=2.4)
    return champion, result.groups[0]


def _aliases(settings) -> dict[str, str]:
    client = registry.client_for(settings)
    return {alias: str(v) for alias, v in client.get_registered_model(NAME).aliases.items()}


def test_skops_round_trip_scores_identically(champion):
    telemetry = pipeline.open_telemetry(champion)
    windows = pipeline.training_windows(champion)
    fleet, _ = train_fleet(champion, telemetry, windows)
    path = save_fleet(fleet, champion.home / "fleet.skops")

    loaded = load_fleet(path)

    model, back = fleet.components["ec2-latency"], loaded.components["ec2-latency"]
    assert back.train_end == model.train_end
    until = model.train_end + pd.Timedelta(days=3)
    before = score_component(model, telemetry, None, until, champion, "v")
    after = score_component(back, telemetry, None, until, champion, "v")
    assert len(before.records) == 864
    pd.testing.assert_frame_equal(before.records, after.records)


class _Untrusted:
    pass


def test_untrusted_type_is_refused_with_its_name(champion, tmp_path):
    telemetry = pipeline.open_telemetry(champion)
    fleet, _ = train_fleet(champion, telemetry, pipeline.training_windows(champion))
    fleet.params["extra"] = _Untrusted()
    path = tmp_path / "tampered.skops"
    save_fleet(fleet, path)

    assert "tests.test_lifecycle._Untrusted" in sio.get_untrusted_types(file=path)
    with pytest.raises(
        UntrustedModelError, match=r"refusing to load untrusted types \['[\w.]*_Untrusted'\]"
    ):
        load_fleet(path)


def test_model_is_logged_with_a_signature(champion):
    import mlflow

    info = mlflow.models.get_model_info(f"models:/{NAME}@champion")
    inputs = info.signature.inputs.to_dict()
    assert inputs[0] == {"type": "string", "name": "component", "required": True}
    assert {"type": "double", "name": "latency_ms:value", "required": False} in inputs
    assert info.signature.outputs.input_names() == ["anomaly_score"]


def test_worse_challenger_is_rejected_and_champion_keeps_serving(rejected):
    settings, outcome = rejected

    assert outcome.decision == "rejected"
    gate = outcome.gate
    assert gate.metric == "auc_pr"
    assert gate.champion["positives"] == gate.challenger["positives"] == 79
    assert gate.champion["rows"] == gate.challenger["rows"] == 564
    assert gate.challenger["auc_pr"] == pytest.approx(0.155, abs=0.01)
    # The default ensemble ranks this holdout's failure rows about twice as well.
    assert gate.champion["auc_pr"] > gate.challenger["auc_pr"] + 0.1
    assert _aliases(settings) == {"champion": "1", "challenger": "2"}
    run = registry.client_for(settings).get_run(outcome.run_id)
    assert run.data.tags["predictor.gate"] == "rejected"
    assert "auc_pr 0.15" in run.data.tags["predictor.gate.reason"]

    result = pipeline.score(settings, dry_run=True)
    scores = pipeline.open_risk_store(settings).scores()
    assert result.scores_written == len(scores) > 2000
    assert set(scores["model_version"]) == {f"{NAME}/1"}
    assert set(scores["model_role"]) == {"champion"}


def test_shadow_scores_are_stored_and_call_no_hook(rejected):
    settings, _ = rejected
    result = pipeline.score(settings, dry_run=True)
    store = pipeline.open_risk_store(settings)

    shadow = store.scores(shadow=True)
    assert result.shadow_scores_written == len(shadow) > 1000
    assert set(shadow["model_version"]) == {f"{NAME}/2"}
    assert set(shadow["model_role"]) == {"challenger"}
    # The challenger enters high or critical on its own, yet only the champion's
    # entries reach the hook.
    entries = shadow[
        shadow["level"].isin(["high", "critical"]) & (shadow["level"] != shadow["previous_level"])
    ]
    assert len(entries) > 0
    calls = store.hook_calls()
    assert result.hook_calls == len(calls) > 0
    assert {call["model_version"] for call in calls["payload"]} == {f"{NAME}/1"}


def test_better_challenger_is_promoted_and_rollback_restores(rejected):
    settings, _ = rejected

    better = pipeline.train(settings, until=UNTIL).groups[0]

    assert better.decision == "promoted"
    assert better.gate.challenger["auc_pr"] >= better.gate.champion["auc_pr"] - 0.02
    assert _aliases(settings) == {"champion": "3"}
    assert registry.champion_history(settings, NAME) == ["1", "3"]

    assert registry.rollback(settings, NAME) == ("3", "1")
    assert _aliases(settings) == {"champion": "1"}
    with pytest.raises(ModelLifecycleError, match="has no previous champion"):
        registry.rollback(settings, NAME)


def _artifact(settings, version: str) -> Path:
    client = registry.client_for(settings)
    source = client.get_model_version(NAME, version).source
    uri = client.get_model_version_download_uri(NAME, version)
    folder = Path(uri.removeprefix("file://"))
    assert folder.is_dir(), (source, uri)
    return next(folder.rglob("fleet.skops"))


def test_deleted_champion_falls_back_to_statistical_detector(champion, caplog):
    _artifact(champion, "1").unlink()

    result = pipeline.score(champion, dry_run=True)

    scores = pipeline.open_risk_store(champion).scores()
    assert result.scores_written == len(scores) > 2000
    assert set(scores["model_role"]) == {"statistical_fallback"}
    assert scores["model_version"].str.startswith("statistical:robust_z@").all()
    assert scores["anomaly_score"].notna().mean() > 0.99
    assert result.fallbacks["ec2-latency"].startswith("statistical:")
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("ec2-latency" in m and f"{NAME}/1 failed" in m for m in warned)


def test_corrupted_champion_falls_back_to_previous_version(rejected, caplog):
    settings, _ = rejected
    registry.promote(settings, NAME, "2", "by hand for the test")
    _artifact(settings, "2").write_bytes(b"not a zip file")

    result = pipeline.score(settings, dry_run=True)

    scores = pipeline.open_risk_store(settings).scores()
    assert len(scores) > 2000
    assert set(scores["model_role"]) == {"previous_champion"}
    assert set(scores["model_version"]) == {f"{NAME}/1"}
    assert result.fallbacks == {"ec2-latency": f"{NAME}/1"}
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(f"{NAME}/2 failed" in m and "BadZipFile" in m for m in warned)


def test_models_cli_lists_promotes_and_rolls_back(rejected, capsys):
    settings, _ = rejected
    config = str(settings.config_path)

    assert cli.main(["--config", config, "models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "rejected" in listing
    assert "challenger" in listing
    assert "champion" in listing
    assert "auc_pr=0.15" in listing

    assert cli.main(["--config", config, "models", "promote", "2"]) == 0
    assert _aliases(settings) == {"champion": "2"}
    assert cli.main(["--config", config, "models", "rollback"]) == 0
    assert _aliases(settings) == {"champion": "1"}

    assert cli.main(["--config", config, "models", "rollback"]) == 2
    assert "has no previous champion" in capsys.readouterr().err
    assert cli.main(["--config", config, "models", "promote", f"{NAME}/9"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"predictor models: error: registered model {NAME!r} has no version '9'"]


def test_groups_get_one_registered_model_each(sample_data, tmp_path, isolated_env):
    extra = '\n[[components]]\nname = "ec2-latency"\ngroup = "web"\n'
    settings = _settings(sample_data, tmp_path, extra)

    assert registry.component_groups(settings, ["ec2-latency", "gpu-1"]) == {
        f"{NAME}-web": ["ec2-latency"],
        NAME: ["gpu-1"],
    }


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "holdout_days = 0",
            "lifecycle.holdout_days: expected a positive number of days, got 0.0",
        ),
        ("tolerance = 1.5", r"lifecycle.tolerance: expected a number in \[0, 1\), got 1.5"),
        ("holdout_fraction = 1", r"lifecycle.holdout_fraction: expected a number in \(0, 1\)"),
        ("tolerence = 0.1", "lifecycle: unknown key 'tolerence'"),
    ],
)
def test_lifecycle_config_is_validated(tmp_path, isolated_env, table, message):
    config = tmp_path / "predictor.toml"
    config.write_text(f"[lifecycle]\n{table}\n", encoding="utf-8")

    with pytest.raises(ConfigError, match=message):
        load_settings(config)


def test_holdout_has_nothing_after_until(champion):
    telemetry = pipeline.open_telemetry(champion)
    windows = pipeline.training_windows(champion, UNTIL)
    from predictor.lifecycle.gate import holdout_windows

    holdout = holdout_windows(telemetry, windows, ["ec2-latency"], champion)["ec2-latency"]
    assert holdout.end < UNTIL
    assert holdout.end - holdout.start == pd.Timedelta(days=2)
    assert np.isfinite(holdout.start.value)
