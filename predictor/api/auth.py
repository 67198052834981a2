"""Bearer-token authentication: tokens from ``PREDICTOR_API_TOKENS``, compared in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Annotated

from fastapi import HTTPException, Security, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    description="A token from PREDICTOR_API_TOKENS, sent as `Authorization: Bearer <token>`.",
)

UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


def token_matches(candidate: str, tokens: Sequence[str]) -> bool:
    """Return whether ``candidate`` equals one of ``tokens``.

    Every token is compared, each with :func:`hmac.compare_digest`, so the time taken
    does not reveal which token or how many leading characters matched.
    """
    presented = candidate.encode("utf-8")
    matches = [hmac.compare_digest(presented, token.encode("utf-8")) for token in tokens]
    return any(matches)


class TokenAuth:
    """FastAPI dependency that rejects a request without a valid bearer token with 401."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = tuple(tokens)

    async def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]
    ) -> None:
        if credentials is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="missing bearer token; send the header 'Authorization: Bearer <token>'",
                headers=UNAUTHORIZED_HEADERS,
            )
        if not token_matches(credentials.credentials, self._tokens):
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="invalid bearer token",
                headers=UNAUTHORIZED_HEADERS,
            )
