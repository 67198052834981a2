"""JSON schema of the hook payload, also written to ``docs/hook-payload.schema.json``.

Regenerate the file with ``python -m predictor.hooks.schema docs/hook-payload.schema.json``;
a test fails when it is out of date.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from predictor.hooks.payload import EVENT_TYPES, SCHEMA_VERSION

_LEVEL = {"type": "string", "enum": ["normal", "elevated", "high", "critical", "unknown"]}
_NUMBER_OR_NULL = {"type": ["number", "null"]}


def payload_schema() -> dict[str, Any]:
    """Return the JSON schema (draft 2020-12) of the predictor hook payload."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://predictor.invalid/schemas/hook-payload-{SCHEMA_VERSION}.json",
        "title": "predictor hook payload",
        "description": (
            "Body of a webhook call and stdin of a command hook. Fields may be added "
            "within a schema version; removing or changing a field bumps schema_version."
        ),
        "type": "object",
        "required": [
            "schema_version",
            "event",
            "idempotency_key",
            "component",
            "group",
            "level",
            "previous_level",
            "risk",
            "raw_risk",
            "calibrated",
            "scored_at",
            "horizon_minutes",
            "time_to_threshold_seconds",
            "drivers",
            "model_version",
            "budget",
        ],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "event": {"type": "string", "enum": list(EVENT_TYPES)},
            "idempotency_key": {
                "type": "string",
                "minLength": 1,
                "description": "Same key for every repeat of one event; drop duplicates by it.",
            },
            "component": {
                "type": "string",
                "minLength": 1,
                "description": "Component, or the budget scope (group:NAME or fleet) "
                "of a budget_exceeded event.",
            },
            "group": {"type": ["string", "null"]},
            "level": _LEVEL,
            "previous_level": {"anyOf": [_LEVEL, {"type": "null"}]},
            "risk": {**_NUMBER_OR_NULL, "minimum": 0, "maximum": 1},
            "raw_risk": {**_NUMBER_OR_NULL, "minimum": 0, "maximum": 1},
            "calibrated": {"type": "boolean"},
            "scored_at": {"type": "string", "format": "date-time"},
            "horizon_minutes": {"type": "number", "exclusiveMinimum": 0},
            "time_to_threshold_seconds": _NUMBER_OR_NULL,
            "drivers": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["metric"],
                    "properties": {
                        "metric": {"type": "string"},
                        "contribution": _NUMBER_OR_NULL,
                    },
                },
            },
            "model_version": {"type": "string"},
            "budget": {
                "description": "Details of a budget_exceeded event, null otherwise.",
                "anyOf": [
                    {"type": "null"},
                    {
                        "type": "object",
                        "required": [
                            "scope",
                            "limit",
                            "limit_value",
                            "allowed",
                            "components",
                            "count",
                            "window",
                            "held",
                        ],
                        "properties": {
                            "scope": {"type": "string"},
                            "limit": {
                                "enum": [
                                    "max_components",
                                    "max_percent",
                                    "max_per_hour",
                                    "max_percent_per_hour",
                                ]
                            },
                            "limit_value": {"type": "number"},
                            "allowed": {"type": "integer", "minimum": 0},
                            "components": {"type": "integer", "minimum": 1},
                            "count": {"type": "integer", "minimum": 0},
                            "window": {"enum": ["at once", "per hour"]},
                            "held": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                ],
            },
        },
    }


def schema_text() -> str:
    """Return the schema as the indented JSON text stored in the docs."""
    return json.dumps(payload_schema(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the schema to the file named in ``argv``, or to stdout."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        Path(args[0]).write_text(schema_text(), encoding="utf-8")
    else:
        sys.stdout.write(schema_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
