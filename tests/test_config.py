"""Settings: TOML file, environment overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from predictor.config import load_settings
from predictor.detect import DEFAULT_MEMBER_WEIGHTS, DEFAULT_MEMBERS
from predictor.exceptions import ConfigError


def _config(tmp_path, text: str):
    path = tmp_path / "predictor.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_live_under_home(tmp_path):
    settings = load_settings(
        _config(tmp_path, ""), environ={"PREDICTOR_HOME": str(tmp_path / "h")}
    )

    assert settings.home == (tmp_path / "h").resolve()
    assert settings.store_url == f"sqlite:///{settings.home / 'risk.db'}"
    assert settings.mlflow_tracking_uri == f"sqlite:///{settings.home / 'mlflow.db'}"
    assert settings.telemetry_dir == settings.home / "telemetry"


def test_environment_overrides_file(tmp_path):
    path = _config(tmp_path, "[levels]\ncritical = 0.8\n")
    environ = {
        "PREDICTOR_LEVELS__CRITICAL": "0.95",
        "PREDICTOR_MODEL__MEMBERS": '["iforest", "robust_z"]',
        "PREDICTOR_MODEL__FUSION": "mean",
        "PREDICTOR_STORE_URL": "postgresql://db/risk",
    }

    settings = load_settings(path, environ=environ)

    assert settings.levels.critical == 0.95
    assert settings.model.members == ("iforest", "robust_z")
    assert settings.model.fusion == "mean"
    assert settings.store_url == "postgresql://db/risk"


def test_channel_member_is_accepted(tmp_path):
    path = _config(tmp_path, '[model]\nmembers = ["knn", "channel"]\n')

    settings = load_settings(path, environ={})

    assert settings.model.members == ("knn", "channel")


def test_model_defaults_match_the_ensemble_defaults(tmp_path):
    settings = load_settings(_config(tmp_path, ""), environ={})

    assert settings.model.members == DEFAULT_MEMBERS
    assert settings.model.member_weights == DEFAULT_MEMBER_WEIGHTS


def test_member_weights_read_from_file_and_environment(tmp_path):
    path = _config(
        tmp_path, '[model]\nmembers = ["knn", "knn_log"]\nmember_weights = {knn = 0.7}\n'
    )

    from_file = load_settings(path, environ={})
    from_env = load_settings(
        path, environ={"PREDICTOR_MODEL__MEMBER_WEIGHTS": "{knn = 0.5, knn_log = 1}"}
    )

    assert from_file.model.member_weights == {"knn": 0.7}
    assert from_env.model.member_weights == {"knn": 0.5, "knn_log": 1.0}


def test_relative_source_paths_resolve_against_config(tmp_path):
    path = _config(tmp_path, '[[sources]]\nname = "a"\nformat = "long"\npath = "in/a.csv"\n')

    settings = load_settings(path, environ={})

    assert settings.sources[0].path == tmp_path / "in" / "a.csv"


@pytest.mark.parametrize(
    ("text", "environ", "match"),
    [
        ("[modle]\n", {}, "unknown section 'modle'"),
        (
            "[model]\nn_estimators = 'many'\n",
            {},
            r"model.n_estimators: expected an integer, got 'many'",
        ),
        ("[model]\nmembers = ['forest']\n", {}, r"model.members: expected one of .* got 'forest'"),
        ("[model]\nfusion = 'median'\n", {}, r"model.fusion: expected one of .* got 'median'"),
        (
            "[model]\nmember_weights = {forest = 0.5}\n",
            {},
            r"model.member_weights: expected one of .* got 'forest'",
        ),
        (
            "[model]\nmembers = ['knn']\nmember_weights = {knn = 2}\n",
            {},
            r"model.member_weights.knn: expected a number in \(0, 1\], got 2.0",
        ),
        (
            "[model]\nmember_weights = {knn = 'low'}\n",
            {},
            r"model.member_weights.knn: expected a number, got 'low'",
        ),
        (
            "[model]\nmember_weights = [0.7]\n",
            {},
            r"model.member_weights: expected a table of numbers",
        ),
        ("[levels]\nhigh = 0.9\ncritical = 0.8\n", {}, "elevated < high < critical"),
        ('[[hooks]]\nname = "h"\ntype = "webhook"\n', {}, r"hooks\[0\].url: required"),
        ('[[hooks]]\nname = "h"\ntype = "pager"\nurl = "x"\n', {}, r"hooks\[0\].type"),
        (
            '[[sources]]\nname = "a"\nformat = "nab"\npath = "a.csv"\n',
            {},
            r"sources\[0\].component",
        ),
        ("", {"PREDICTOR_MODLE__X": "1"}, "PREDICTOR_MODLE__X"),
        ("", {"PREDICTOR_LEVELS__CRITICAL": "'high'"}, "levels.critical: expected a number"),
    ],
)
def test_invalid_settings_name_the_key(tmp_path, text, environ, match):
    with pytest.raises(ConfigError, match=match):
        load_settings(_config(tmp_path, text), environ=environ)


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere\.toml: configuration file not found"):
        load_settings(tmp_path / "nowhere.toml", environ={})


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_attempts = 0", r"hooks\[0\].max_attempts: expected an integer >= 1, got 0"),
        ("breaker_failures = 1.5", r"hooks\[0\].breaker_failures: expected an integer"),
        ("backoff_seconds = -1", r"hooks\[0\].backoff_seconds: expected a number >= 0, got -1"),
        (
            "backoff_max_seconds = 1\nbackoff_seconds = 5",
            r"hooks\[0\].backoff_max_seconds: expected >= backoff_seconds",
        ),
        ('secret_env = " "', r"hooks\[0\].secret_env: expected the name of an environment"),
    ],
)
def test_hook_delivery_keys_rejected(tmp_path, line, message):
    path = tmp_path / "predictor.toml"
    path.write_text(f'[[hooks]]\nname = "h"\ntype = "webhook"\nurl = "http://x"\n{line}\n')

    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ={"PREDICTOR_HOME": str(tmp_path)})


def test_hook_delivery_keys_read(tmp_path):
    path = tmp_path / "predictor.toml"
    path.write_text(
        '[[hooks]]\nname = "h"\ntype = "webhook"\nurl = "http://x"\n'
        'secret_env = "H_SECRET"\nmax_attempts = 8\nbackoff_seconds = 2\n'
        "breaker_failures = 3\nbreaker_cooldown_seconds = 30\n"
    )

    [hook] = load_settings(path, environ={"PREDICTOR_HOME": str(tmp_path)}).hooks

    assert (hook.secret_env, hook.max_attempts, hook.backoff_seconds) == ("H_SECRET", 8, 2)
    assert (hook.breaker_failures, hook.breaker_cooldown_seconds) == (3, 30)
