from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.fleet import (
    NOISE_LIMIT,
    SCALE_LIMIT,
    THRESHOLD_QUANTILE,
    fleet_series,
    generate_fleet,
    load_servers,
    metric_names,
    plan_fleet,
    write_fleet_config,
)
from predictor.config import load_settings

SAMPLE = Path(__file__).resolve().parents[2] / "data"
COMPONENTS = 6
STEPS = 40


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(COMPONENTS, steps=STEPS, data_dir=SAMPLE, seed=7)


def _cube(fleet):
    return fleet.rows["value"].to_numpy().reshape(COMPONENTS, STEPS, -1)


def _fits(source, replayed):
    """Return whether ``replayed`` is within the perturbation bounds of ``source``."""
    return np.abs(replayed - source) <= SCALE_LIMIT * np.abs(source) + NOISE_LIMIT + 1e-12


def test_each_component_matches_exactly_one_start_row_of_its_server(fleet):
    """Search every start row of every server: only the planned one fits the values."""
    servers = load_servers(SAMPLE)
    plan = plan_fleet(COMPONENTS, SAMPLE, seed=7)
    cube = _cube(fleet)
    for component in range(COMPONENTS):
        matches = []
        for index, server in enumerate(servers):
            rows = len(server.labels)
            windows = (np.arange(rows)[:, None] + np.arange(STEPS)[None, :]) % rows
            fit = _fits(server.values[windows], cube[component][None]).all(axis=(1, 2))
            matches += [(index, int(offset)) for offset in np.flatnonzero(fit)]
        expected = (int(plan.server_index[component]), int(plan.offsets[component]))
        assert matches == [expected]


def test_values_are_perturbed_not_copied(fleet):
    plan = plan_fleet(COMPONENTS, SAMPLE, seed=7)
    server, row = plan.source_rows(STEPS)
    source = np.stack([plan.servers[s].values[r] for s, r in zip(server[:, 0], row, strict=True)])
    cube = _cube(fleet)
    assert _fits(source, cube).all()
    assert (cube != source).mean() > 0.99


def test_labels_follow_the_replayed_rows():
    # Start rows are random; 2,000 steps of each sample machine cover labeled anomalies.
    steps = 2000
    fleet = generate_fleet(3, steps=steps, data_dir=SAMPLE, seed=1, metrics=1)
    plan = plan_fleet(3, SAMPLE, seed=1)
    server, row = plan.source_rows(steps)
    expected = np.concatenate(
        [plan.servers[s].labels[r] for s, r in zip(server[:, 0], row, strict=True)]
    )
    assert fleet.labels["label"].to_numpy().tolist() == expected.tolist()
    assert expected.sum() > 0
    assert fleet.labels["timestamp"].equals(fleet.rows["timestamp"].reset_index(drop=True))


def test_components_of_one_server_start_at_different_rows():
    plan = plan_fleet(30, SAMPLE, seed=0)
    for server in range(len(plan.servers)):
        offsets = plan.offsets[plan.server_index == server]
        assert len(offsets) == 10
        assert len(set(offsets.tolist())) == 10


def test_same_seed_same_fleet_other_seed_other_fleet(fleet):
    again = generate_fleet(COMPONENTS, steps=STEPS, data_dir=SAMPLE, seed=7)
    other = generate_fleet(COMPONENTS, steps=STEPS, data_dir=SAMPLE, seed=8)
    pd.testing.assert_frame_equal(fleet.rows, again.rows)
    pd.testing.assert_frame_equal(fleet.labels, again.labels)
    assert not np.allclose(fleet.rows["value"], other.rows["value"])


def test_columns_dtypes_order_and_names(fleet):
    rows, labels = fleet.rows, fleet.labels
    assert list(rows.columns) == ["timestamp", "component", "metric", "value"]
    assert str(rows["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert isinstance(rows["component"].dtype, pd.CategoricalDtype)
    assert isinstance(rows["metric"].dtype, pd.CategoricalDtype)
    assert rows["value"].dtype == np.float64
    assert len(rows) == COMPONENTS * STEPS * 20
    assert list(rows["metric"].cat.categories) == metric_names()
    assert rows["component"].iloc[0] == "gpu-node-00000"
    assert rows["component"].iloc[-1] == f"gpu-node-{COMPONENTS - 1:05d}"
    first = rows[rows["component"] == "gpu-node-00001"]
    assert first["timestamp"].iloc[0] == pd.Timestamp("2026-01-05T00:00:00Z")
    assert first["timestamp"].diff().dropna().unique().tolist() in (
        [pd.Timedelta(0), pd.Timedelta(seconds=300)],
        [pd.Timedelta(seconds=300), pd.Timedelta(0)],
    )
    assert list(labels.columns) == ["component", "timestamp", "label"]
    assert len(labels) == COMPONENTS * STEPS
    # The sample has SMD machines only.
    assert set(fleet.groups.values()) == {"smd"}
    assert fleet.step_seconds == 300


def test_fleet_series_replays_m00_of_the_same_rows(fleet):
    series = fleet_series(COMPONENTS, steps=STEPS, data_dir=SAMPLE, seed=7)
    assert series.shape == (COMPONENTS, STEPS)
    assert series.dtype == np.float64
    m00 = _cube(fleet)[:, :, 0]
    # Same rows and scale; each has its own noise of at most NOISE_LIMIT.
    assert np.abs(series - m00).max() <= 2 * NOISE_LIMIT + 1e-12
    assert not np.array_equal(series, m00)


def test_fleet_config_loads_with_groups_threshold_and_model(fleet, tmp_path):
    path = write_fleet_config(
        tmp_path / "conf" / "predictor.toml",
        fleet,
        model={"members": ["iforest"], "window_steps": 6},
    )
    settings = load_settings(path, environ={"PREDICTOR_HOME": str(tmp_path / "home")})

    assert [c.name for c in settings.components] == list(fleet.groups)
    assert {c.group for c in settings.components} == {"smd"}
    assert settings.model.members == ("iforest",)
    assert settings.model.window_steps == 6
    assert settings.model.step_seconds == 300
    (threshold,) = settings.thresholds
    m00 = fleet.rows.loc[fleet.rows["metric"] == "m00", "value"]
    assert threshold.metric == "m00"
    assert threshold.direction == "above"
    assert threshold.value == pytest.approx(m00.quantile(THRESHOLD_QUANTILE), abs=1e-4)


def test_fleet_config_without_thresholds(fleet, tmp_path):
    path = write_fleet_config(tmp_path / "predictor.toml", fleet, thresholds=False)
    settings = load_settings(path, environ={"PREDICTOR_HOME": str(tmp_path / "home")})
    assert settings.thresholds == ()


def test_folder_without_servers_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"no source servers found; expected smd/test"):
        generate_fleet(2, steps=3, data_dir=tmp_path)


def test_server_without_labels_is_an_error(tmp_path):
    (tmp_path / "asd" / "test").mkdir(parents=True)
    (tmp_path / "asd" / "test" / "omi-1.txt").write_text(",".join(["0.5"] * 19) + "\n")
    with pytest.raises(ValueError, match=r"omi-1.txt: its label file .* is missing"):
        generate_fleet(2, steps=3, data_dir=tmp_path)
