"""Group-shared ensembles and the batch scoring path, on real SMD server telemetry.

The batch path must give the scores of the per-component path on the same model; the
carried smoothing state must give the scores of a run that reads the whole history.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from predictor import pipeline
from predictor.batch_scoring import score_shared_batch
from predictor.config import load_settings
from predictor.exceptions import PredictorUserError
from predictor.lifecycle.serialization import load_fleet, save_fleet
from predictor.lifecycle.serving import GroupModels, ServingSet
from predictor.scoring import score_component
from predictor.store import RiskStore
from predictor.telemetry import TelemetryStore
from predictor.training import TrainingWindow, train_fleet

MACHINES = ("machine-1-2", "machine-2-1", "machine-2-3")
TRAIN_ROWS = 600
SCORED_ROWS = 90
START = pd.Timestamp("2024-01-01T00:00:00Z")
STEP = pd.Timedelta(minutes=1)
VERSION = "fleet-smd/1"

CONFIG = """
[model]
members = ["iforest", "ecod", "knn", "pca", "robust_z", "channel"]
n_estimators = 30
sharing = "group"
max_group_rows = 900
step_seconds = 60
horizon_minutes = 30

[[components]]
name = "machine-1-2"
group = "smd"

[[components]]
name = "machine-2-1"
group = "smd"

[[components]]
name = "machine-2-3"
group = "smd"

[[thresholds]]
metric = "cpu_r"
value = 0.9
"""


def _smd_rows(sample_data: Path, machine: str, rows: int) -> pd.DataFrame:
    names = (sample_data / "smd" / "metric_names.txt").read_text(encoding="utf-8").split()
    train = pd.read_csv(sample_data / "smd" / "train" / f"{machine}.txt.gz", header=None)
    wide = train.iloc[:rows, :8].set_axis(names[:8], axis=1)
    wide["timestamp"] = START + STEP * np.arange(rows)
    long = wide.melt(id_vars="timestamp", var_name="metric", value_name="value")
    return long.assign(component=machine)


@pytest.fixture
def fleet_home(sample_data, tmp_path, isolated_env):
    """Three real SMD machines in a telemetry store, trained with one shared ensemble."""
    config = tmp_path / "predictor.toml"
    config.write_text(CONFIG, encoding="utf-8")
    settings = load_settings(config)
    telemetry = TelemetryStore(tmp_path / "telemetry")
    for machine in MACHINES:
        telemetry.append(_smd_rows(sample_data, machine, TRAIN_ROWS + SCORED_ROWS))
    cut = START + STEP * (TRAIN_ROWS - 1)
    windows = {machine: TrainingWindow(None, cut) for machine in MACHINES}
    fleet, _ = train_fleet(settings, telemetry, windows)
    return settings, telemetry, fleet, cut


def test_group_sharing_fits_one_ensemble(fleet_home):
    _, _, fleet, cut = fleet_home

    models = [fleet.components[machine] for machine in MACHINES]
    assert len({id(model.ensemble) for model in models}) == 1
    assert all(model.shares_ensemble and model.train_end == cut for model in models)
    # Each machine is standardized by its own training medians, which differ.
    centers = np.stack([model.feature_center for model in models])
    assert not np.allclose(centers[0], centers[1])
    assert all(set(model.forecasters) == {"cpu_r"} for model in models)


def test_saved_shared_model_keeps_one_ensemble(fleet_home, tmp_path):
    _, _, fleet, _ = fleet_home

    path = save_fleet(fleet, tmp_path / "fleet.skops")
    loaded = load_fleet(path)

    ensembles = {id(model.ensemble) for model in loaded.components.values()}
    assert len(ensembles) == 1
    assert list(loaded.components) == list(fleet.components)
    for name, model in fleet.components.items():
        _assert_same_attributes(loaded.components[name], model, skip=("ensemble", "forecasters"))
        _assert_same_attributes(
            loaded.components[name].forecasters["cpu_r"], model.forecasters["cpu_r"]
        )


def _assert_same_attributes(loaded, original, skip=()):
    assert type(loaded) is type(original)
    assert set(vars(loaded)) == set(vars(original))
    for name, value in vars(original).items():
        if name in skip:
            continue
        other = vars(loaded)[name]
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(other, value)
        elif isinstance(value, pd.Series):
            pd.testing.assert_series_equal(other, value)
        elif isinstance(value, float) and np.isnan(value):
            assert np.isnan(other), name
        else:
            assert other == value, name
            assert type(other) is type(value), name


def _first_cycle(settings, telemetry, fleet, until):
    """Score every machine from the end of training, the way a first run does."""
    store = RiskStore("sqlite://")
    for machine in MACHINES:
        scored = score_component(
            fleet.components[machine], telemetry, None, until, settings, VERSION
        )
        store.write_scores(scored.records)
    return store


def _assert_same_records(batch, fleet, telemetry, last_scores, until, settings):
    for machine in MACHINES:
        one = score_component(
            fleet.components[machine],
            telemetry,
            last_scores.get(machine),
            until,
            settings,
            VERSION,
        ).records
        mine = batch.records[batch.records["component"] == machine].reset_index(drop=True)
        assert list(mine["scored_at"]) == list(one["scored_at"])
        for column in ("anomaly_score", "surprise", "risk", "forecast_probability"):
            np.testing.assert_allclose(mine[column], one[column], rtol=1e-9, atol=1e-12)
        assert list(mine["level"]) == list(one["level"])
        assert list(mine["pending_count"]) == list(one["pending_count"])
        assert list(mine["drivers"]) == list(one["drivers"])


def test_batch_path_equals_per_component_path(fleet_home):
    settings, telemetry, fleet, cut = fleet_home
    store = _first_cycle(settings, telemetry, fleet, cut + STEP * 40)
    last_scores = store.last_scores(MACHINES)
    until = cut + STEP * 52
    models = [fleet.components[machine] for machine in MACHINES]

    batch = score_shared_batch(models, telemetry, last_scores, until, settings, VERSION)

    assert batch.rest == []
    assert batch.components == list(MACHINES)
    assert len(batch.records) == 3 * 12
    _assert_same_records(batch, fleet, telemetry, last_scores, until, settings)


def test_batch_first_cycle_equals_per_component_path(fleet_home):
    settings, telemetry, fleet, cut = fleet_home
    until = cut + STEP * 25
    models = [fleet.components[machine] for machine in MACHINES]

    batch = score_shared_batch(models, telemetry, {}, until, settings, VERSION)

    assert batch.components == list(MACHINES)
    assert len(batch.records) == 3 * 25
    _assert_same_records(batch, fleet, telemetry, {}, until, settings)


def test_carried_smoothing_equals_scoring_the_history_again(fleet_home):
    settings, telemetry, fleet, cut = fleet_home
    store = _first_cycle(settings, telemetry, fleet, cut + STEP * 40)
    model = fleet.components["machine-2-1"]
    last = store.last_score("machine-2-1")
    until = cut + STEP * 60

    carried = score_component(model, telemetry, last, until, settings, VERSION).records
    history = score_component(
        model, telemetry, {**last, "surprise": None}, until, settings, VERSION
    ).records

    np.testing.assert_allclose(carried["surprise"], history["surprise"], rtol=1e-9)
    np.testing.assert_allclose(carried["anomaly_score"], history["anomaly_score"], rtol=1e-9)


def test_batch_leaves_stale_and_late_components(
    fleet_home,
):
    settings, telemetry, fleet, cut = fleet_home
    store = _first_cycle(settings, telemetry, fleet, cut + STEP * 40)
    # machine-2-3 has no score yet, so its next grid point differs from the others';
    # machine-2-1's rows stop long before the scoring time.
    last_scores = store.last_scores(["machine-1-2", "machine-2-1"])
    models = [fleet.components[machine] for machine in MACHINES]
    silent = _without_rows_after(telemetry, "machine-2-1", cut + STEP * 41)

    batch = score_shared_batch(models, silent, last_scores, cut + STEP * 50, settings, VERSION)

    assert batch.components == ["machine-1-2"]
    assert sorted(batch.rest) == ["machine-2-1", "machine-2-3"]


def _without_rows_after(telemetry, component, end):
    """A copy of the store in which ``component`` has no rows after ``end``."""
    rows = telemetry.read()
    keep = (rows["component"] != component) | (rows["timestamp"] <= end)
    copy = TelemetryStore(Path(telemetry.root).parent / "silent-telemetry")
    copy.append(rows[keep])
    return copy


def test_pipeline_score_uses_the_batch(fleet_home, caplog):
    settings, telemetry, fleet, cut = fleet_home
    fleet.version = VERSION
    store = pipeline.open_risk_store(settings)

    first = pipeline.score(
        settings, cut + STEP * 30, fleet=fleet, telemetry=telemetry, store=store
    )
    with caplog.at_level(logging.INFO, logger="predictor.batch_scoring"):
        second = pipeline.score(
            settings, cut + STEP * 31, fleet=fleet, telemetry=telemetry, store=store
        )

    assert first.scores_written == 3 * 30
    assert second.scores_written == 3
    assert second.components_scored == 3
    assert "3 components scored together" in caplog.text
    assert store.scores()["surprise"].notna().all()


def test_group_sharing_rejects_components_with_different_metrics(
    sample_data, tmp_path, isolated_env
):
    config = tmp_path / "predictor.toml"
    config.write_text(CONFIG, encoding="utf-8")
    settings = load_settings(config)
    telemetry = TelemetryStore(tmp_path / "telemetry")
    telemetry.append(_smd_rows(sample_data, "machine-1-2", 300))
    other = _smd_rows(sample_data, "machine-2-1", 300)
    telemetry.append(other[other["metric"] != "load_1"])

    with pytest.raises(
        PredictorUserError, match=r"'machine-2-1' of group 'smd' lacks metrics \['load_1'\]"
    ):
        train_fleet(settings, telemetry, {})


def test_challenger_shadow_scores_run_in_a_batch_too(fleet_home, sample_data):
    settings, telemetry, fleet, cut = fleet_home
    windows = {machine: TrainingWindow(None, cut) for machine in MACHINES}
    challenger, _ = train_fleet(
        dataclasses.replace(settings, model=dataclasses.replace(settings.model, random_state=7)),
        telemetry,
        windows,
    )
    group = GroupModels("fleet-smd", "1", "2", None, fleets={"1": fleet, "2": challenger})
    serving = ServingSet(settings, [group])
    assert serving.resolve_components(telemetry) == list(MACHINES)
    store = pipeline.open_risk_store(settings)

    pipeline.score(settings, cut + STEP * 20, serving=serving, telemetry=telemetry, store=store)
    last_shadow = store.last_scores(MACHINES, shadow=True)
    second = pipeline.score(
        settings, cut + STEP * 24, serving=serving, telemetry=telemetry, store=store
    )

    assert second.shadow_scores_written == 3 * 4
    shadow = store.scores(since=cut + STEP * 21, shadow=True)
    assert set(shadow["model_role"]) == {"challenger"}
    for machine in MACHINES:
        one = score_component(
            challenger.components[machine],
            telemetry,
            last_shadow[machine],
            cut + STEP * 24,
            settings,
            "fleet-smd/2",
        ).records
        mine = shadow[shadow["component"] == machine].reset_index(drop=True)
        np.testing.assert_allclose(mine["risk"], one["risk"], rtol=1e-9)
