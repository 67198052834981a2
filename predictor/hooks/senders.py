"""Hook senders: POST a JSON payload to a webhook, or run a command without a shell.

Both senders return a :class:`SendResult` and never raise for a delivery problem (a
refused connection, an HTTP error status, a missing executable, a timeout), so one broken
hook cannot stop the scoring job.

Command placeholders
--------------------
Two placeholders are replaced inside each element of a command hook's ``argv``, and
nowhere else (not in the payload, not in the environment):

``{python}``
    The running Python interpreter (``sys.executable``).
``{home}``
    The ``PREDICTOR_HOME`` folder of the run.

Other text in braces is passed unchanged. The command runs with ``shell=False``, so
``;``, ``|``, ``$(...)`` and quotes in an element reach the program literally.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from predictor.config import HookConfig
from predictor.hooks.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

logger = logging.getLogger(__name__)

#: Characters of a response body or of stderr kept in a call's detail.
DETAIL_MAX_CHARS = 300


@dataclass(frozen=True)
class SendResult:
    """Outcome of one hook call.

    Attributes
    ----------
    ok : bool
        True when the receiver accepted the payload (HTTP 2xx, exit code 0).
    detail : str
        HTTP status, exit code or the error, for the hook-call record.
    retry_after : float or None, default=None
        Seconds the receiver asked to wait before the next attempt (HTTP 429 or 503 with
        a ``Retry-After`` header), or None.
    retryable : bool, default=True
        False when repeating the call cannot help: an HTTP 4xx other than 408, 425 and
        429, an invalid URL or a missing signing secret.
    """

    ok: bool
    detail: str
    retry_after: float | None = None
    retryable: bool = True


def _clip(text: str) -> str:
    text = " ".join(text.split())
    if len(text) > DETAIL_MAX_CHARS:
        return text[:DETAIL_MAX_CHARS] + "..."
    return text


def _encode(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, allow_nan=False, sort_keys=True).encode("utf-8")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Reject redirects, because urllib would turn a redirected POST into a bodiless GET."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _retry_after(value: str | None, now: float) -> float | None:
    """Return the seconds to wait from a ``Retry-After`` header (seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - now
    return max(0.0, seconds) if seconds == seconds else None


def _signature_headers(hook: HookConfig, body: bytes) -> dict[str, str]:
    """Return the signature headers, or raise KeyError naming the missing secret variable."""
    if not hook.secret_env:
        return {}
    secret = os.environ.get(hook.secret_env)
    if not secret:
        raise KeyError(hook.secret_env)
    timestamp = int(time.time())
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def send_webhook(hook: HookConfig, payload: Mapping[str, Any]) -> SendResult:
    """POST ``payload`` as JSON to ``hook.url``.

    Parameters
    ----------
    hook : HookConfig
        A ``webhook`` hook: its ``url``, ``headers``, ``timeout_seconds`` and
        ``secret_env`` are used.
    payload : mapping
        JSON-serialisable payload; its ``idempotency_key``, when present, is also sent in
        the ``Idempotency-Key`` header so the receiver can drop repeats.

    Returns
    -------
    SendResult
        ``ok`` is True only for a 2xx response. A 3xx response counts as a failure,
        because the redirect is not followed. A 429 or 503 response with a
        ``Retry-After`` header sets ``retry_after``.

    Notes
    -----
    The request honours the standard ``http_proxy``, ``https_proxy`` and ``no_proxy``
    environment variables, as ``urllib`` does. Header values are never logged.

    With ``secret_env`` set, the body is signed with HMAC-SHA256 (see
    :mod:`predictor.hooks.signing`); an unset or empty variable fails the attempt
    without sending. ``timeout_seconds`` bounds the connection and each read.
    """
    url = hook.url or ""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        return SendResult(
            False, f"invalid url {url!r}: expected an http:// or https:// address", retryable=False
        )

    body = _encode(payload)
    headers = {"Content-Type": "application/json", **dict(hook.headers)}
    key = payload.get("idempotency_key")
    if key is not None:
        headers[IDEMPOTENCY_HEADER] = str(key)
    try:
        headers.update(_signature_headers(hook, body))
    except KeyError:
        return SendResult(
            False,
            f"signing secret: environment variable {hook.secret_env!r} (secret_env) is "
            "unset or empty; nothing sent",
            retryable=False,
        )
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")

    try:
        with _OPENER.open(request, timeout=hook.timeout_seconds) as response:
            status = response.status
            response.read(DETAIL_MAX_CHARS)
    except urllib.error.HTTPError as error:
        error_body = error.read(DETAIL_MAX_CHARS).decode("utf-8", "replace")
        error.close()
        detail = f"HTTP {error.code} {error.reason}"
        location = error.headers.get("Location") if error.headers else None
        if location:
            detail += f", redirect to {location!r} not followed; set the hook url to it"
        wait = None
        if error.code in (429, 503) and error.headers:
            wait = _retry_after(error.headers.get("Retry-After"), time.time())
        text = _clip(f"{detail}: {error_body}" if error_body.strip() else detail)
        permanent = 400 <= error.code < 500 and error.code not in (408, 425, 429)
        return SendResult(False, text, wait, retryable=not permanent)
    except TimeoutError:
        return SendResult(False, f"timed out after {hook.timeout_seconds:g} s")
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, TimeoutError):
            return SendResult(False, f"timed out after {hook.timeout_seconds:g} s")
        return SendResult(False, _clip(f"connection failed: {reason}"))
    except (http.client.HTTPException, OSError, ValueError) as error:
        return SendResult(False, _clip(f"request failed: {type(error).__name__}: {error}"))

    if not 200 <= status < 300:
        return SendResult(False, f"HTTP {status}")
    return SendResult(True, f"HTTP {status}")


def _substitute(argv: tuple[str, ...], home: Path | None) -> list[str]:
    """Replace ``{python}`` and ``{home}`` inside each argv element."""
    substituted = []
    for element in argv:
        element = element.replace("{python}", sys.executable)
        if "{home}" in element:
            if home is None:
                raise ValueError(f"argv element {element!r} uses {{home}}, but no home was given")
            element = element.replace("{home}", str(home))
        substituted.append(element)
    return substituted


def _hook_environment(
    payload: Mapping[str, Any], env_extra: Mapping[str, str] | None
) -> dict[str, str]:
    risk = payload.get("risk")
    environment = dict(os.environ)
    environment.update(env_extra or {})
    environment.update(
        {
            "PREDICTOR_HOOK_COMPONENT": str(payload.get("component", "")),
            "PREDICTOR_HOOK_LEVEL": str(payload.get("level", "")),
            "PREDICTOR_HOOK_PREVIOUS_LEVEL": str(payload.get("previous_level") or ""),
            "PREDICTOR_HOOK_RISK": "" if risk is None else repr(float(risk)),
            "PREDICTOR_HOOK_PAYLOAD": _encode(payload).decode("utf-8"),
        }
    )
    return environment


def run_command(
    hook: HookConfig,
    payload: Mapping[str, Any],
    env_extra: Mapping[str, str] | None = None,
    *,
    home: Path | None = None,
) -> SendResult:
    """Run ``hook.argv`` as a subprocess without a shell and hand it the payload.

    Parameters
    ----------
    hook : HookConfig
        A ``command`` hook: ``argv``, ``payload_via`` and ``timeout_seconds`` are used.
    payload : mapping
        JSON-serialisable payload. With ``payload_via="stdin"`` it is written to the
        command's stdin; with ``"env"`` stdin is empty. Either way the environment contains
        ``PREDICTOR_HOOK_COMPONENT``, ``PREDICTOR_HOOK_LEVEL``,
        ``PREDICTOR_HOOK_PREVIOUS_LEVEL`` (empty for none), ``PREDICTOR_HOOK_RISK``
        (empty when unknown) and ``PREDICTOR_HOOK_PAYLOAD`` (the JSON text).
    env_extra : mapping or None, default=None
        More environment variables for the command, on top of this process's environment.
    home : Path or None, default=None
        Value of the ``{home}`` placeholder.

    Returns
    -------
    SendResult
        ``ok`` is True only for exit code 0. A missing executable, a timeout or a
        ``{home}`` placeholder without ``home`` gives ``ok=False``, never an exception.
    """
    try:
        argv = _substitute(hook.argv, home)
    except ValueError as error:
        return SendResult(False, str(error))
    if not argv:
        return SendResult(False, "argv is empty: expected a program and its arguments")

    stdin_data = _encode(payload) if hook.payload_via == "stdin" else b""
    try:
        completed = subprocess.run(
            argv,
            shell=False,
            input=stdin_data,
            env=_hook_environment(payload, env_extra),
            capture_output=True,
            timeout=hook.timeout_seconds,
            check=False,
        )
    except FileNotFoundError:
        return SendResult(False, f"executable not found: {argv[0]!r}")
    except PermissionError:
        return SendResult(False, f"executable not runnable (permission denied): {argv[0]!r}")
    except subprocess.TimeoutExpired:
        return SendResult(False, f"timed out after {hook.timeout_seconds:g} s; command killed")
    except (OSError, ValueError) as error:
        # ValueError covers an argv element or environment value with a NUL byte.
        return SendResult(False, _clip(f"command failed to start: {argv[0]!r}: {error}"))

    if completed.returncode != 0:
        stderr = completed.stderr.decode("utf-8", "replace").strip()
        detail = f"exit code {completed.returncode}"
        return SendResult(False, _clip(f"{detail}: {stderr}" if stderr else detail))
    return SendResult(True, "exit code 0")
