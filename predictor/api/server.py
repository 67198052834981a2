"""Run the risk-score API under uvicorn."""

from __future__ import annotations

import logging

from predictor.config import Settings
from predictor.exceptions import ConfigError

logger = logging.getLogger(__name__)


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    access_log: bool = True,
    log_level: str = "info",
) -> None:
    """Serve the API until interrupted.

    Raises
    ------
    ConfigError
        If ``PREDICTOR_API_TOKENS`` is empty, because every data route would then
        return 401.
    """
    import uvicorn

    from predictor.api.app import create_app

    if not settings.api.tokens:
        raise ConfigError(
            "PREDICTOR_API_TOKENS is empty; set it to one or more comma-separated tokens "
            "before starting the API"
        )
    app = create_app(settings)
    logger.info("serving the risk-score API on http://%s:%d", host, port)
    uvicorn.run(app, host=host, port=port, access_log=access_log, log_level=log_level.lower())
