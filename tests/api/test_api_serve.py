"""``predictor serve``, the API settings, and the checked-in OpenAPI document."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from predictor.api.auth import token_matches
from predictor.api.openapi import render_openapi
from predictor.cli import main
from predictor.config import load_settings
from predictor.exceptions import ConfigError
from tests.api.conftest import free_port

REPO = Path(__file__).resolve().parents[2]


def test_openapi_document_up_to_date():
    checked_in = (REPO / "docs" / "openapi.json").read_text(encoding="utf-8")

    assert checked_in == render_openapi(), "docs/openapi.json is stale; run `make openapi`"


def test_openapi_document_declares_errors():
    document = json.loads(render_openapi())
    operation = document["paths"]["/v1/risk/{component}"]["get"]

    assert sorted(operation["responses"]) == ["200", "401", "404", "422", "503"]
    assert operation["security"] == [{"bearer": []}]
    assert "security" not in document["paths"]["/healthz"]["get"]
    assert "security" not in document["paths"]["/readyz"]["get"]


def test_tokens_read_from_environment(tmp_path):
    environ = {"PREDICTOR_HOME": str(tmp_path), "PREDICTOR_API_TOKENS": " abc , def,,"}

    settings = load_settings(environ=environ)

    assert settings.api.tokens == ("abc", "def")
    assert "abc" not in repr(settings)
    assert settings.api.metrics_auth is True


def test_metrics_auth_from_environment(tmp_path):
    environ = {"PREDICTOR_HOME": str(tmp_path), "PREDICTOR_API__METRICS_AUTH": "false"}

    assert load_settings(environ=environ).api.metrics_auth is False


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"tokens": ["abc"]}, "api.tokens: tokens are not read from the configuration file"),
        ({"metrics_auth": "no"}, "api.metrics_auth: expected true or false, got 'no'"),
        ({"scoring_interval_minutes": 0}, "api.scoring_interval_minutes: expected a positive"),
        ({"port": 80}, "api: unknown key 'port'"),
    ],
)
def test_bad_api_settings_rejected(tmp_path, table, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ={"PREDICTOR_HOME": str(tmp_path)}, overrides={"api": table})


def test_token_with_space_rejected(tmp_path):
    environ = {"PREDICTOR_HOME": str(tmp_path), "PREDICTOR_API_TOKENS": "good,bad token"}

    with pytest.raises(ConfigError, match="PREDICTOR_API_TOKENS: token 2 contains"):
        load_settings(environ=environ)


def test_token_matches_exactly():
    assert token_matches("abc", ("xyz", "abc"))
    assert not token_matches("ab", ("abc",))
    assert not token_matches("abcd", ("abc",))
    assert not token_matches("", ("abc",))
    assert not token_matches("abc", ())


def test_serve_without_tokens_exits_2(tmp_path, isolated_env, capsys):
    assert main(["serve", "--port", str(free_port())]) == 2

    assert "PREDICTOR_API_TOKENS is empty" in capsys.readouterr().err


def test_serve_rejects_bad_port(isolated_env, capsys):
    with pytest.raises(SystemExit, match="2"):
        main(["serve", "--port", "70000"])

    assert "expected a port from 1 to 65535, got '70000'" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_command_answers_http(tmp_path, isolated_env):
    port = free_port()
    env = {
        **os.environ,
        "PREDICTOR_API_TOKENS": "cli-token",
        "PYTHONPATH": str(REPO),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "predictor.cli", "serve", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        health = None
        deadline = time.monotonic() + 60
        while health is None and time.monotonic() < deadline:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.2)
        risk = httpx.get(
            f"http://127.0.0.1:{port}/v1/risk",
            headers={"Authorization": "Bearer cli-token"},
            timeout=5,
        )
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)

    assert health is not None, output
    assert health.json() == {"status": "ok"}
    assert risk.status_code == 200
    assert risk.json()["total"] == 0
    assert f"serving the risk-score API on http://127.0.0.1:{port}" in output
