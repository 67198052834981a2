from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from predictor.store import HOOK_CALL_COLUMNS, SCORE_COLUMNS, HookCallRecord, RiskStore

T0 = pd.Timestamp("2024-05-01 12:00", tz="UTC")


def _scores(components=("gpu-1", "gpu-2"), n_times=3, start=T0, step_minutes=5):
    rows = []
    for i in range(n_times):
        for j, component in enumerate(components):
            rows.append({
                "component": component,
                "group_name": "pool-a",
                "scored_at": start + pd.Timedelta(minutes=step_minutes * i),
                "risk": 0.1 * (i + 1) + 0.01 * j,
                "anomaly_score": 0.2,
                "forecast_probability": 0.05,
                "time_to_threshold_seconds": np.nan if i == 0 else 600.0 * i,
                "level": "normal" if i < 2 else "elevated",
                "previous_level": None if i == 0 else "normal",
                "pending_level": None,
                "pending_count": 0,
                "drivers": [{"metric": "gpu_temp_celsius", "contribution": 0.7 - 0.1 * i}],
                "model_version": "3",
                "calibrated": False,
                "stale": False,
            })
    return pd.DataFrame(rows)


@pytest.fixture
def store_url(tmp_path):
    return f"sqlite:///{tmp_path / 'state' / 'risk.db'}"


@pytest.fixture
def store(store_url):
    store = RiskStore(store_url)
    yield store
    store.close()


def test_store_creates_sqlite_folder_and_wal(tmp_path, store_url):
    store = RiskStore(store_url)
    with store.engine.connect() as connection:
        mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar()
    store.close()

    assert (tmp_path / "state" / "risk.db").is_file()
    assert mode == "wal"


def test_write_scores_inserts_rows(store):
    frame = _scores()

    inserted = store.write_scores(frame)
    stored = store.scores()

    assert inserted == 6
    assert list(stored.columns) == list(SCORE_COLUMNS)
    assert len(stored) == 6
    assert stored["scored_at"].dt.tz is not None
    assert str(stored["scored_at"].dt.tz) == "UTC"


def test_write_scores_duplicate_adds_no_rows(store):
    frame = _scores()
    store.write_scores(frame)

    again = store.write_scores(frame)
    overlapping = _scores(n_times=4)  # three known times and one new time per component
    partly_new = store.write_scores(overlapping)

    assert again == 0
    assert partly_new == 2
    assert len(store.scores()) == 8


def test_scores_survive_reload(store_url):
    frame = _scores()
    first = RiskStore(store_url)
    first.write_scores(frame)
    before = first.scores()
    first.close()

    second = RiskStore(store_url)
    after = second.scores()
    second.close()

    pd.testing.assert_frame_equal(before, after)
    assert str(after["scored_at"].dt.tz) == "UTC"
    assert str(after["created_at"].dt.tz) == "UTC"
    expected_times = sorted(frame["scored_at"][frame["component"] == "gpu-1"])
    assert list(after.loc[after["component"] == "gpu-1", "scored_at"]) == expected_times
    first_drivers = after.loc[0, "drivers"]
    assert first_drivers == [{"contribution": 0.7, "metric": "gpu_temp_celsius"}]
    assert after["risk"].tolist() == pytest.approx(
        frame.sort_values(["component", "scored_at"])["risk"].tolist()
    )


def test_scored_at_in_other_zone_stored_as_utc(store):
    frame = _scores(components=("gpu-1",), n_times=1)
    frame["scored_at"] = frame["scored_at"].dt.tz_convert("Europe/Berlin")

    store.write_scores(frame)
    stored = store.scores()

    assert stored.loc[0, "scored_at"] == T0
    assert str(stored["scored_at"].dt.tz) == "UTC"
    # The same instant written in UTC is a duplicate, not a new row.
    assert store.write_scores(_scores(components=("gpu-1",), n_times=1)) == 0


def test_latest_scores_one_row_per_component(store):
    store.write_scores(_scores(n_times=3))
    store.write_scores(_scores(components=("gpu-3",), n_times=1))

    latest = store.latest_scores()

    assert latest["component"].tolist() == ["gpu-1", "gpu-2", "gpu-3"]
    assert latest["scored_at"].tolist() == [
        T0 + pd.Timedelta(minutes=10),
        T0 + pd.Timedelta(minutes=10),
        T0,
    ]
    assert latest["level"].tolist() == ["elevated", "elevated", "normal"]


def test_last_score_returns_latest_or_none(store):
    store.write_scores(_scores(n_times=2))

    last = store.last_score("gpu-2")

    assert last is not None
    assert last["scored_at"] == T0 + pd.Timedelta(minutes=5)
    assert last["previous_level"] == "normal"
    assert last["drivers"] == [{"contribution": pytest.approx(0.6), "metric": "gpu_temp_celsius"}]
    assert store.last_score("missing") is None


def test_scores_filters_by_component_and_time(store):
    store.write_scores(_scores(n_times=4))

    window = store.scores(
        component="gpu-1",
        since=T0 + pd.Timedelta(minutes=5),
        until=T0 + pd.Timedelta(minutes=10),
    )

    assert window["component"].unique().tolist() == ["gpu-1"]
    assert window["scored_at"].tolist() == [
        T0 + pd.Timedelta(minutes=5),
        T0 + pd.Timedelta(minutes=10),
    ]


def test_scores_naive_bound_rejected(store):
    with pytest.raises(ValueError, match="since: expected a tz-aware timestamp"):
        store.scores(since=pd.Timestamp("2024-05-01"))


def test_nan_numbers_stored_as_null(store):
    frame = _scores(components=("gpu-1",), n_times=1)
    frame["risk"] = np.nan
    frame["level"] = "unknown"

    store.write_scores(frame)
    stored = store.scores()
    with store.engine.connect() as connection:
        raw = connection.exec_driver_sql(
            "SELECT risk, time_to_threshold_seconds FROM scores"
        ).one()

    assert raw == (None, None)
    assert np.isnan(stored.loc[0, "risk"])
    assert stored.loc[0, "level"] == "unknown"


def test_minimal_columns_take_defaults(store):
    frame = pd.DataFrame({
        "component": ["gpu-1"],
        "group": ["pool-b"],
        "scored_at": [T0],
        "risk": [0.4],
        "level": ["normal"],
        "model_version": ["7"],
    })

    store.write_scores(frame)
    row = store.last_score("gpu-1")

    assert row is not None
    assert row["group_name"] == "pool-b"
    assert row["drivers"] == []
    assert row["pending_count"] == 0
    assert row["calibrated"] is False
    assert row["stale"] is False
    assert row["previous_level"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"scored_at": [pd.Timestamp("2024-05-01")]}, "expected tz-aware timestamps, got naive"),
        ({"level": ["red"]}, r"scores row 0, column 'level': expected one of .*got 'red'"),
        ({"risk": [np.inf]}, r"scores row 0, column 'risk': expected a finite number"),
        ({"drivers": [["gpu_temp"]]}, r"scores row 0, column 'drivers': expected a list"),
        ({"component": [""]}, r"scores row 0, column 'component': expected a name"),
    ],
)
def test_write_scores_bad_value_rejected(store, change, message):
    frame = _scores(components=("gpu-1",), n_times=1)
    for column, values in change.items():
        frame[column] = values

    with pytest.raises(ValueError, match=message):
        store.write_scores(frame)
    assert store.scores().empty


def test_write_scores_missing_column_rejected(store):
    frame = _scores().drop(columns=["model_version"])

    with pytest.raises(ValueError, match=r"missing required columns \['model_version'\]"):
        store.write_scores(frame)


def test_empty_store_frames_have_columns(store):
    scores = store.scores()
    calls = store.hook_calls()

    assert list(scores.columns) == list(SCORE_COLUMNS)
    assert list(calls.columns) == list(HOOK_CALL_COLUMNS)
    assert str(scores["scored_at"].dtype) == "datetime64[us, UTC]"
    assert store.latest_scores().empty


def test_write_scores_100k_rows(store):
    n_rows = 100_000
    frame = pd.DataFrame({
        "component": [f"node-{i % 1000}" for i in range(n_rows)],
        "scored_at": pd.date_range(T0, periods=n_rows // 1000, freq="5min").repeat(1000),
        "risk": np.random.default_rng(0).random(n_rows),
        "level": "normal",
        "model_version": "1",
        "drivers": [[{"metric": "cpu", "contribution": 1.0}]] * n_rows,
    })

    started = time.perf_counter()
    inserted = store.write_scores(frame)
    elapsed_seconds = time.perf_counter() - started

    assert inserted == n_rows
    with store.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM scores")).scalar() == n_rows
    # A generous bound: it catches a per-row commit regression, not a slow machine.
    assert elapsed_seconds < 60, f"100k-row insert took {elapsed_seconds:.1f} s"


def _call(status="delivered", minutes=0, key=None, hook="pager"):
    scored_at = T0 + pd.Timedelta(minutes=minutes)
    return HookCallRecord(
        hook=hook,
        component="gpu-1",
        level="critical",
        previous_level="high",
        scored_at=scored_at,
        called_at=pd.Timestamp.now(tz="UTC"),
        status=status,
        attempt_detail="HTTP 200",
        payload={"component": "gpu-1", "risk": 0.9},
        idempotency_key=key or f"gpu-1:high->critical:{scored_at.isoformat()}",
    )


def test_hook_calls_round_trip_and_unique(store_url):
    first = RiskStore(store_url)
    assert first.record_hook_call(_call()) is True
    assert first.record_hook_call(_call()) is False
    first.close()

    second = RiskStore(store_url)
    calls = second.hook_calls(component="gpu-1", hook="pager")
    second.close()

    assert len(calls) == 1
    assert calls.loc[0, "payload"] == {"component": "gpu-1", "risk": 0.9}
    assert calls.loc[0, "scored_at"] == T0
    assert str(calls["called_at"].dt.tz) == "UTC"
    assert calls.loc[0, "status"] == "delivered"


def test_record_hook_call_unknown_status_rejected(store):
    with pytest.raises(ValueError, match=r"hook call status: expected one of .*got 'sent'"):
        store.record_hook_call(_call(status="sent"))


def test_last_delivered_call_ignores_other_statuses(store):
    store.record_hook_call(_call(status="delivered", minutes=0))
    store.record_hook_call(_call(status="failed", minutes=30))
    store.record_hook_call(_call(status="delivered", minutes=90))
    store.record_hook_call(_call(status="dry_run", minutes=120, key="dry-run:x"))

    assert store.last_delivered_call("pager", "gpu-1") == T0 + pd.Timedelta(minutes=90)
    assert store.last_delivered_call(
        "pager", "gpu-1", at_or_before=T0 + pd.Timedelta(minutes=60)
    ) == T0
    assert store.last_delivered_call(
        "pager", "gpu-1", statuses=("delivered", "dry_run")
    ) == T0 + pd.Timedelta(minutes=120)
    assert store.last_delivered_call("other", "gpu-1") is None


# The scores table as created before the raw_risk column existed.
_SCORES_WITHOUT_RAW_RISK = """
CREATE TABLE scores (
    id INTEGER NOT NULL, component VARCHAR(255) NOT NULL, group_name VARCHAR(255),
    scored_at DATETIME NOT NULL, risk FLOAT, anomaly_score FLOAT,
    forecast_probability FLOAT, time_to_threshold_seconds FLOAT,
    level VARCHAR(16) NOT NULL, previous_level VARCHAR(16), pending_level VARCHAR(16),
    pending_count INTEGER NOT NULL, drivers TEXT NOT NULL,
    model_version VARCHAR(255) NOT NULL, calibrated BOOLEAN NOT NULL,
    stale BOOLEAN NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (id),
    CONSTRAINT uq_scores_component_scored_at UNIQUE (component, scored_at)
)
"""


def test_old_store_gains_raw_risk_from_risk(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text(_SCORES_WITHOUT_RAW_RISK))
        connection.execute(sa.text(
            "INSERT INTO scores (component, scored_at, risk, level, pending_count, drivers, "
            "model_version, calibrated, stale, created_at) VALUES ('gpu-1', "
            "'2024-05-01 12:00:00', 0.42, 'normal', 0, '[]', '3', 0, 0, '2024-05-01 12:01:00')"
        ))
    engine.dispose()

    store = RiskStore(url)
    scores = store.scores()

    assert scores["raw_risk"].tolist() == [0.42]
    assert store.write_scores(_scores(n_times=1)) == 2
    store.close()


def test_raw_risk_defaults_when_uncalibrated(store):
    frame = _scores(components=("gpu-1",), n_times=2)
    frame["calibrated"] = [False, True]

    store.write_scores(frame)
    scores = store.scores()

    assert scores["raw_risk"].iloc[0] == pytest.approx(frame["risk"].iloc[0])
    assert np.isnan(scores["raw_risk"].iloc[1])
    assert scores["calibrated"].tolist() == [False, True]
