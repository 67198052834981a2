from __future__ import annotations

import json
import socket
import sys

import pytest

from predictor.config import HookConfig
from predictor.hooks import run_command, send_webhook

PAYLOAD = {
    "schema_version": "1",
    "idempotency_key": "gpu-1:high->critical:2024-05-01T12:00:00+00:00",
    "component": "gpu-1",
    "level": "critical",
    "previous_level": "high",
    "risk": 0.93,
}

# Writes its stdin, argv and the hook environment variables to the file named by argv[1].
CAPTURE_SCRIPT = """
import json, os, sys
data = {
    "stdin": sys.stdin.read(),
    "argv": sys.argv[2:],
    "env": {k: v for k, v in os.environ.items() if k.startswith("PREDICTOR_")},
}
with open(sys.argv[1], "w") as f:
    json.dump(data, f)
"""


def _webhook(url, **changes):
    return HookConfig(name="pager", type="webhook", url=url, **changes)


def _command(*argv, **changes):
    return HookConfig(name="failover", type="command", argv=tuple(argv), **changes)


def test_webhook_posts_json_with_headers(http_receiver):
    hook = _webhook(http_receiver.url, headers={"Authorization": "Bearer test-token"})

    result = send_webhook(hook, PAYLOAD)

    assert result.ok
    assert result.detail == "HTTP 200"
    assert len(http_receiver.requests) == 1
    request = http_receiver.requests[0]
    assert request["json"] == PAYLOAD
    assert request["path"] == "/hook"
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["Authorization"] == "Bearer test-token"
    assert request["headers"]["Idempotency-Key"] == PAYLOAD["idempotency_key"]


def test_webhook_server_error_fails(http_receiver):
    http_receiver.status = 500
    http_receiver.body = b"database down"

    result = send_webhook(_webhook(http_receiver.url), PAYLOAD)

    assert not result.ok
    assert result.detail.startswith("HTTP 500")
    assert "database down" in result.detail


def test_webhook_redirect_not_followed(http_receiver):
    http_receiver.status = 302

    result = send_webhook(_webhook(http_receiver.url), PAYLOAD)

    assert not result.ok
    assert result.detail.startswith("HTTP 302")
    assert len(http_receiver.requests) == 1


def test_webhook_connection_refused_fails():
    # Bind a port and close it again, so nothing listens there.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = send_webhook(_webhook(f"http://127.0.0.1:{port}/hook", timeout_seconds=2), PAYLOAD)

    assert not result.ok
    assert result.detail.startswith("connection failed")


def test_webhook_non_http_url_rejected(tmp_path):
    result = send_webhook(_webhook(f"file://{tmp_path}/x"), PAYLOAD)

    assert not result.ok
    assert "expected an http:// or https:// address" in result.detail


def test_command_gets_payload_on_stdin_and_env(tmp_path):
    out = tmp_path / "captured.json"
    hook = _command("{python}", "-c", CAPTURE_SCRIPT, str(out), "{home}/x", "{other}")

    result = run_command(hook, PAYLOAD, {"PREDICTOR_HOME": str(tmp_path)}, home=tmp_path)

    assert result.ok, result.detail
    captured = json.loads(out.read_text())
    assert json.loads(captured["stdin"]) == PAYLOAD
    assert captured["argv"] == [f"{tmp_path}/x", "{other}"]
    env = captured["env"]
    assert env["PREDICTOR_HOOK_COMPONENT"] == "gpu-1"
    assert env["PREDICTOR_HOOK_LEVEL"] == "critical"
    assert env["PREDICTOR_HOOK_PREVIOUS_LEVEL"] == "high"
    assert float(env["PREDICTOR_HOOK_RISK"]) == pytest.approx(0.93)
    assert json.loads(env["PREDICTOR_HOOK_PAYLOAD"]) == PAYLOAD
    assert env["PREDICTOR_HOME"] == str(tmp_path)


def test_command_payload_via_env_leaves_stdin_empty(tmp_path):
    out = tmp_path / "captured.json"
    hook = _command(sys.executable, "-c", CAPTURE_SCRIPT, str(out), payload_via="env")

    result = run_command(hook, PAYLOAD)

    assert result.ok, result.detail
    captured = json.loads(out.read_text())
    assert captured["stdin"] == ""
    assert json.loads(captured["env"]["PREDICTOR_HOOK_PAYLOAD"]) == PAYLOAD


def test_command_never_uses_a_shell(tmp_path):
    out = tmp_path / "captured.json"
    hostile = [
        f"; touch {tmp_path}/pwned",
        f"$(touch {tmp_path}/pwned2)",
        f"`touch {tmp_path}/pwned3`",
        f"| touch {tmp_path}/pwned4",
        "&& echo $HOME",
    ]
    hook = _command("{python}", "-c", CAPTURE_SCRIPT, str(out), *hostile)

    result = run_command(hook, PAYLOAD)

    assert result.ok, result.detail
    assert json.loads(out.read_text())["argv"] == hostile
    for name in ("pwned", "pwned2", "pwned3", "pwned4"):
        assert not (tmp_path / name).exists(), name


def test_command_missing_executable_fails(tmp_path):
    hook = _command(str(tmp_path / "no-such-program"), "--flag")

    result = run_command(hook, PAYLOAD)

    assert not result.ok
    assert result.detail == f"executable not found: {str(tmp_path / 'no-such-program')!r}"


def test_command_nonzero_exit_fails_with_stderr():
    hook = _command("{python}", "-c", "import sys; sys.stderr.write('no route'); sys.exit(3)")

    result = run_command(hook, PAYLOAD)

    assert not result.ok
    assert result.detail == "exit code 3: no route"


def test_command_timeout_fails():
    hook = _command("{python}", "-c", "import time; time.sleep(30)", timeout_seconds=0.5)

    result = run_command(hook, PAYLOAD)

    assert not result.ok
    assert result.detail.startswith("timed out after 0.5 s")


def test_command_home_placeholder_without_home_fails():
    result = run_command(_command("{python}", "{home}/script.py"), PAYLOAD)

    assert not result.ok
    assert "uses {home}, but no home was given" in result.detail
