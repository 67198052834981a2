"""HMAC-SHA256 signatures of webhook bodies, and their verification for receivers.

The signature covers the timestamp and the exact body bytes::

    signed = f"{timestamp}.".encode() + body
    signature = "sha256=" + hmac.new(secret, signed, hashlib.sha256).hexdigest()

and is sent in the ``X-Predictor-Signature`` header, the timestamp (Unix seconds) in
``X-Predictor-Timestamp``. :func:`verify_signature` depends on the standard library only,
so a receiver can copy it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

#: Header with ``sha256=<hex digest>``.
SIGNATURE_HEADER = "X-Predictor-Signature"
#: Header with the signing time in whole Unix seconds.
TIMESTAMP_HEADER = "X-Predictor-Timestamp"
#: Header with the action's idempotency key.
IDEMPOTENCY_HEADER = "Idempotency-Key"


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def sign(secret: str | bytes, timestamp: int | str, body: bytes) -> str:
    """Return the signature header value of ``body`` sent at ``timestamp``.

    Examples
    --------
    >>> sign("s3cret", 1714564800, b'{"a":1}')[:7]
    'sha256='
    """
    signed = f"{int(timestamp)}.".encode() + body
    digest = hmac.new(_as_bytes(secret), signed, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str | bytes,
    timestamp: str | int,
    body: bytes,
    signature: str,
    tolerance: float = 300.0,
    *,
    now: float | None = None,
) -> bool:
    """Return whether ``signature`` signs ``body`` at ``timestamp`` and is fresh enough.

    Parameters
    ----------
    secret : str or bytes
        The shared secret (the value of the hook's ``secret_env`` variable).
    timestamp : str or int
        The ``X-Predictor-Timestamp`` header.
    body : bytes
        The raw request body, exactly as received (not re-encoded JSON).
    signature : str
        The ``X-Predictor-Signature`` header, ``sha256=<hex>``.
    tolerance : float, default=300.0
        Largest accepted difference in seconds between ``timestamp`` and now, which
        bounds how long a captured request can be replayed.
    now : float or None, default=None
        Current Unix time; None reads the clock.

    Returns
    -------
    bool
        True only when the signature matches and the timestamp is within ``tolerance``.
    """
    try:
        sent = int(str(timestamp).strip())
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    expected = sign(secret, sent, body)
    return hmac.compare_digest(expected, str(signature).strip())
