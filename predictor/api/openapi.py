"""The OpenAPI document of the risk-score API, as checked into ``docs/openapi.json``.

Regenerate it with ``make openapi`` (``python -m predictor.api.openapi docs/openapi.json``)
after changing a route or a response model; a test fails while the file is out of date.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from predictor.api.app import create_app
from predictor.config import ApiConfig, Settings


def openapi_document() -> dict[str, Any]:
    """Return the OpenAPI document of the app with ``/metrics`` protected (the default).

    The document does not depend on the deployment, so the app is built on settings that
    point nowhere; building it opens no store.
    """
    settings = Settings(
        home=Path("/nonexistent"),
        store_url="sqlite://",
        mlflow_tracking_uri="sqlite://",
        mlflow_artifact_uri="",
        config_path=None,
        api=ApiConfig(metrics_auth=True),
    )
    return create_app(settings).openapi()


def render_openapi() -> str:
    """Return the document as the JSON text stored in ``docs/openapi.json``."""
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the API's OpenAPI document.")
    parser.add_argument("path", type=Path, help="file to write, e.g. docs/openapi.json")
    args = parser.parse_args(argv)
    args.path.write_text(render_openapi(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
