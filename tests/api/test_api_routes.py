"""Each route of the risk-score API against a real uvicorn server and risk store."""

from __future__ import annotations

import dataclasses
import math
import time

import httpx
import pandas as pd
import pytest

from predictor.api import create_app
from predictor.store import RiskStore
from tests.api.conftest import EXTRA_SCORES, TOKENS, running_server

pytestmark = pytest.mark.slow


def _expected_latest(api_server) -> pd.DataFrame:
    return api_server.store.latest_scores().set_index("component")


def test_healthz_open_without_token(api_server):
    with api_server.client(token=None) as client:
        response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    "path",
    [
        "/v1/risk",
        "/v1/risk/ec2-latency",
        "/v1/risk/ec2-latency/history",
        "/v1/components",
        "/metrics",
    ],
)
def test_routes_reject_missing_token(api_server, path):
    with api_server.client(token=None) as client:
        response = client.get(path)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json() == {
        "detail": "missing bearer token; send the header 'Authorization: Bearer <token>'"
    }


@pytest.mark.parametrize("token", ["wrong", TOKENS[0] + "x", TOKENS[0][:-1], "Token-one"])
def test_routes_reject_wrong_token(api_server, token):
    with api_server.client(token=token) as client:
        response = client.get("/v1/risk/ec2-latency")

    assert response.status_code == 401
    assert response.json() == {"detail": "invalid bearer token"}


def test_basic_auth_header_is_rejected(api_server):
    with api_server.client(token=None) as client:
        response = client.get("/v1/risk", headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401


@pytest.mark.parametrize("token", TOKENS)
def test_every_configured_token_accepted(api_server, token):
    with api_server.client(token=token) as client:
        response = client.get("/v1/risk/ec2-latency")

    assert response.status_code == 200


def test_component_risk_matches_store(api_server):
    expected = api_server.store.last_score("ec2-latency")

    with api_server.client() as client:
        body = client.get("/v1/risk/ec2-latency").json()

    assert body["component"] == "ec2-latency"
    assert body["group"] == "web"
    assert pd.Timestamp(body["scored_at"]) == expected["scored_at"]
    assert body["risk"] == pytest.approx(expected["risk"])
    assert body["level"] == expected["level"]
    assert body["model_version"] == expected["model_version"]
    assert body["calibrated"] is expected["calibrated"]
    assert body["drivers"] == expected["drivers"]
    assert body["model_version"] == "predictor-fleet-web/1"
    # The store returns NaN for a NULL number; the API returns null.
    stored_time = expected["time_to_threshold_seconds"]
    if math.isnan(stored_time):
        assert body["time_to_threshold_seconds"] is None
    else:
        assert body["time_to_threshold_seconds"] == pytest.approx(stored_time)


def test_component_risk_carries_time_to_threshold(api_server):
    with api_server.client() as client:
        body = client.get("/v1/risk/gpu-node-1").json()

    assert body["level"] == "critical"
    assert body["time_to_threshold_seconds"] == 1200.0
    assert body["drivers"] == [
        {
            "metric": "gpu_temp_celsius",
            "contribution": 0.8,
            "kind": None,
            "reason": None,
            "threshold": None,
        }
    ]


def test_unknown_component_is_404(api_server):
    with api_server.client() as client:
        response = client.get("/v1/risk/no-such-node")
        history = client.get("/v1/risk/no-such-node/history")

    assert response.status_code == 404
    assert response.json() == {"detail": "no score stored for component 'no-such-node'"}
    assert history.status_code == 404


def test_list_risk_pages_cover_store(api_server):
    expected = _expected_latest(api_server)
    seen = []
    offset = 0
    with api_server.client() as client:
        while offset is not None:
            body = client.get("/v1/risk", params={"limit": 2, "offset": offset}).json()
            assert body["total"] == len(expected)
            assert len(body["items"]) <= 2
            seen.extend(body["items"])
            offset = body["next_offset"]

    assert [item["component"] for item in seen] == sorted(expected.index)
    for item in seen:
        assert pd.Timestamp(item["scored_at"]) == expected.loc[item["component"], "scored_at"]
        assert item["level"] == expected.loc[item["component"], "level"]


def test_list_risk_filters_level_and_group(api_server):
    with api_server.client() as client:
        critical = client.get("/v1/risk", params={"level": "critical"}).json()
        pool = client.get("/v1/risk", params={"group": "pool-a"}).json()
        both = client.get(
            "/v1/risk", params=[("level", "high"), ("level", "normal"), ("group", "pool-a")]
        ).json()
        none = client.get("/v1/risk", params={"group": "no-such-group"}).json()

    expected = _expected_latest(api_server)
    assert [i["component"] for i in critical["items"]] == sorted(
        expected.index[expected["level"] == "critical"]
    )
    assert [i["component"] for i in pool["items"]] == ["gpu-node-1", "gpu-node-2"]
    assert [i["component"] for i in both["items"]] == ["gpu-node-2"]
    assert none == {"items": [], "total": 0, "limit": 100, "offset": 0, "next_offset": None}


def test_history_window_and_limit(api_server):
    stored = api_server.store.scores(component="ec2-latency")
    since = stored["scored_at"].iloc[10]
    until = stored["scored_at"].iloc[19]

    with api_server.client() as client:
        window = client.get(
            "/v1/risk/ec2-latency/history",
            params={"since": since.isoformat(), "until": until.isoformat()},
        ).json()
        limited = client.get("/v1/risk/ec2-latency/history", params={"limit": 3}).json()
        empty = client.get(
            "/v1/risk/ec2-latency/history", params={"since": "2030-01-01T00:00:00Z"}
        ).json()

    times = [pd.Timestamp(item["scored_at"]) for item in window["items"]]
    assert times == list(stored["scored_at"].iloc[10:20])[::-1]
    assert [pd.Timestamp(i["scored_at"]) for i in limited["items"]] == list(
        stored["scored_at"].iloc[-3:]
    )[::-1]
    assert empty == {"component": "ec2-latency", "items": []}


def test_components_lists_configured_scored_and_telemetry(api_server):
    with api_server.client() as client:
        body = client.get("/v1/components").json()

    by_name = {item["name"]: item for item in body["items"]}
    names = sorted({"ec2-latency", "gpu-node-7"} | {row[0] for row in EXTRA_SCORES})
    assert list(by_name) == names
    assert body["total"] == len(names)
    ec2 = by_name["ec2-latency"]
    assert ec2["group"] == "web"
    assert ec2["configured"] is True
    # The first 2,500 rows of the EC2 file end at 2014-02-27 10:00 (5-minute steps).
    telemetry_end = pd.read_csv(api_server.settings.sources[0].path)["timestamp"].iloc[-1]
    assert pd.Timestamp(ec2["last_telemetry_at"]) == pd.Timestamp(telemetry_end, tz="UTC")
    assert by_name["gpu-node-7"] == {
        "name": "gpu-node-7",
        "group": "pool-a",
        "configured": True,
        "last_scored_at": None,
        "last_telemetry_at": None,
    }
    assert by_name["router-1"]["group"] == "edge"
    assert by_name["router-1"]["configured"] is False


def test_components_pagination(api_server):
    with api_server.client() as client:
        first = client.get("/v1/components", params={"limit": 3}).json()
        second = client.get("/v1/components", params={"limit": 3, "offset": 3}).json()

    assert first["next_offset"] == 3
    assert second["next_offset"] is None
    names = [i["name"] for i in first["items"] + second["items"]]
    assert names == sorted(names)
    assert len(names) == first["total"]


@pytest.mark.parametrize(
    ("path", "params", "location"),
    [
        ("/v1/risk", {"limit": 0}, ["query", "limit"]),
        ("/v1/risk", {"limit": 1001}, ["query", "limit"]),
        ("/v1/risk", {"limit": "ten"}, ["query", "limit"]),
        ("/v1/risk", {"offset": -1}, ["query", "offset"]),
        ("/v1/risk", {"offset": 10**30}, ["query", "offset"]),
        ("/v1/risk", {"level": "severe"}, ["query", "level", 0]),
        ("/v1/risk", {"levle": "critical"}, ["query", "levle"]),
        ("/v1/risk/ec2-latency/history", {"since": "2014-02-01T00:00:00"}, ["query", "since"]),
        ("/v1/risk/ec2-latency/history", {"until": "yesterday"}, ["query", "until"]),
        (
            "/v1/risk/ec2-latency/history",
            {"since": "2014-02-02T00:00:00Z", "until": "2014-02-01T00:00:00Z"},
            ["query", "since"],
        ),
        ("/v1/risk/ec2-latency/history", {"limit": 10001}, ["query", "limit"]),
        ("/v1/risk/-bad-name", {}, ["path", "component"]),
        ("/v1/components", {"offset": "x"}, ["query", "offset"]),
    ],
)
def test_bad_parameter_is_422_naming_it(api_server, path, params, location):
    with api_server.client() as client:
        response = client.get(path, params=params)

    assert response.status_code == 422
    details = response.json()["detail"]
    assert [detail["loc"] for detail in details] == [location]
    assert all(detail["msg"] for detail in details)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/risk/%00",
        "/v1/risk/" + "a" * 300,
        "/v1/risk/ec2-latency%2F..%2F..",
        "/v1/risk/%C3%A9t%C3%A9",
        "/v1/risk/ec2-latency/history?since=%FF",
        "/v1/risk?limit=1e3",
        "/v1/risk?group=" + "g" * 5000,
        "/v1/risk/ec2-latency/history?since=9999-12-31T23:59:59%2B14:00",
        "/v1/risk/ec2-latency/history?since=0001-01-01T00:00:00-14:00",
        "/v1/risk/'%20OR%201=1--",
    ],
)
def test_odd_input_never_500(api_server, path):
    with api_server.client() as client:
        response = client.get(path)

    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text


def test_readyz_ready_with_fresh_scores(api_server):
    # The pipeline's scores are from 2014 but the extra rows are minutes old, and the
    # newest score decides.
    with api_server.client(token=None) as client:
        response = client.get("/readyz")

    body = response.json()
    checks = {check["name"]: check for check in body["checks"]}
    assert response.status_code == 200, body
    assert body["ready"] is True
    assert checks["store"]["ok"] is True
    assert checks["freshness"]["ok"] is True
    assert checks["champion"] == {
        "name": "champion",
        "ok": True,
        "detail": "champions: predictor-fleet-web/1",
    }


def test_readyz_names_failed_checks(api_settings, tmp_path):
    old = pd.Timestamp("2014-02-27 10:00", tz="UTC")
    store = RiskStore(f"sqlite:///{tmp_path / 'risk.db'}")
    store.write_scores(
        pd.DataFrame(
            {
                "component": ["ec2-latency"],
                "scored_at": [old],
                "risk": [0.2],
                "level": ["normal"],
                "model_version": ["predictor-fleet/1"],
            }
        )
    )
    settings = dataclasses.replace(
        api_settings,
        store_url=store.url,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'no-mlflow.db'}",
    )

    with running_server(create_app(settings)) as url, httpx.Client(base_url=url) as client:
        response = client.get("/readyz")
    store.close()

    body = response.json()
    checks = {check["name"]: check for check in body["checks"]}
    assert response.status_code == 503
    assert body["ready"] is False
    assert checks["store"]["ok"] is True
    assert checks["freshness"]["ok"] is False
    assert checks["freshness"]["detail"].startswith(
        "newest score at 2014-02-27T10:00:00+00:00 is "
    )
    assert checks["freshness"]["detail"].endswith(
        "the limit is 600 s (twice the scoring interval)"
    )
    assert checks["champion"] == {
        "name": "champion",
        "ok": False,
        "detail": "model 'predictor-fleet' has no version with alias champion "
        "(1 of 1 models have none)",
    }
    assert not (tmp_path / "no-mlflow.db").exists()


def test_unreachable_store_is_503_not_500(api_settings, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be", encoding="utf-8")
    settings = dataclasses.replace(api_settings, store_url=f"sqlite:///{blocker / 'risk.db'}")
    headers = {"Authorization": f"Bearer {TOKENS[0]}"}

    with (
        running_server(create_app(settings)) as url,
        httpx.Client(base_url=url, headers=headers) as client,
    ):
        risk = client.get("/v1/risk/ec2-latency")
        ready = client.get("/readyz")
        health = client.get("/healthz")
        metrics = client.get("/metrics")

    assert risk.status_code == 503
    assert risk.json() == {"detail": "the risk store cannot be read; see the server log"}
    assert ready.status_code == 503
    store_check = ready.json()["checks"][0]
    assert store_check["name"] == "store"
    assert store_check["ok"] is False
    assert store_check["detail"].startswith("risk store unreachable: cannot open the risk store")
    assert health.status_code == 200
    assert metrics.status_code == 200
    assert "predictor_store_up 0.0" in metrics.text


def test_new_score_served_after_cache_refresh(api_server):
    stored = api_server.store.last_score("router-1")
    newer = stored["scored_at"] + pd.Timedelta(minutes=5)
    frame = pd.DataFrame(
        {
            "component": ["router-1"],
            "group": ["edge"],
            "scored_at": [newer],
            "risk": [0.88],
            "level": ["critical"],
            "model_version": ["predictor-fleet/1"],
        }
    )
    assert api_server.store.write_scores(frame) == 1

    deadline = time.monotonic() + 10
    body = {}
    with api_server.client() as client:
        while time.monotonic() < deadline:
            body = client.get("/v1/risk/router-1").json()
            if body["level"] == "critical":
                break
            time.sleep(0.2)

    assert pd.Timestamp(body["scored_at"]) == newer
    assert body["risk"] == pytest.approx(0.88)
    assert body["level"] == "critical"


def test_component_scored_after_start_found_before_refresh(api_settings, tmp_path):
    store = RiskStore(f"sqlite:///{tmp_path / 'risk.db'}")
    settings = dataclasses.replace(api_settings, store_url=store.url)
    app = create_app(settings, store=store, cache_refresh_seconds=3600)
    frame = pd.DataFrame(
        {
            "component": ["late-node"],
            "scored_at": [pd.Timestamp.now(tz="UTC")],
            "risk": [0.3],
            "level": ["normal"],
            "model_version": ["predictor-fleet/1"],
        }
    )

    with (
        running_server(app) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKENS[0]}"}) as client,
    ):
        before = client.get("/v1/risk/late-node")
        store.write_scores(frame)
        after = client.get("/v1/risk/late-node")
    store.close()

    assert before.status_code == 404
    assert after.status_code == 200
    assert after.json()["component"] == "late-node"


def test_stale_scores_served_with_reason(api_settings, tmp_path):
    from predictor.telemetry.freshness import stale_drivers

    now = pd.Timestamp.now(tz="UTC").floor("s")
    reason = "key metric 'gpu_temp_celsius' has no row in the last 15 min"
    store = RiskStore(f"sqlite:///{tmp_path / 'risk.db'}")
    store.write_scores(
        pd.DataFrame(
            {
                "component": ["gpu-node-9", "gpu-node-9"],
                "scored_at": [now - pd.Timedelta(minutes=5), now],
                "risk": [0.2, 0.2],
                "level": ["normal", "unknown"],
                "stale": [False, True],
                "model_version": ["predictor-fleet/1", "statistical:robust_z@2026-12-01"],
                "model_role": ["champion", "statistical_fallback"],
                "drivers": [[], stale_drivers(reason)],
            }
        )
    )
    settings = dataclasses.replace(api_settings, store_url=store.url)
    headers = {"Authorization": f"Bearer {TOKENS[0]}"}

    with (
        running_server(create_app(settings)) as url,
        httpx.Client(base_url=url, headers=headers) as client,
    ):
        latest = client.get("/v1/risk/gpu-node-9")
        listed = client.get("/v1/risk", params={"level": "unknown"})
        history = client.get("/v1/risk/gpu-node-9/history")
    store.close()

    assert latest.status_code == 200, latest.text
    body = latest.json()
    assert body["level"] == "unknown"
    assert body["stale"] is True
    assert body["model_role"] == "statistical_fallback"
    assert body["drivers"] == [
        {
            "metric": "gpu_temp_celsius",
            "contribution": 1.0,
            "kind": "stale",
            "reason": reason,
            "threshold": None,
        }
    ]
    assert listed.status_code == 200, listed.text
    assert [item["component"] for item in listed.json()["items"]] == ["gpu-node-9"]
    assert history.status_code == 200, history.text
    # History lists the newest score first.
    assert [item["level"] for item in history.json()["items"]] == ["unknown", "normal"]
