from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pandas as pd

from predictor.hooks import HookEvent
from predictor.hooks.schema import payload_schema, schema_text

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "docs" / "hook-payload.schema.json"


def test_schema_file_is_current():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), (
        "docs/hook-payload.schema.json is out of date; regenerate it with "
        "python -m predictor.hooks.schema docs/hook-payload.schema.json"
    )


def test_schema_is_valid_draft_2020_12():
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_FILE.read_text()))


def test_schema_rejects_missing_key():
    payload = HookEvent(
        component="gpu-1",
        group=None,
        level="critical",
        previous_level=None,
        risk=None,
        scored_at=pd.Timestamp("2024-05-01", tz="UTC"),
        horizon_minutes=60,
    ).to_payload()
    validator = jsonschema.Draft202012Validator(payload_schema())
    validator.validate(payload)
    del payload["idempotency_key"]

    errors = list(validator.iter_errors(payload))

    assert [error.message for error in errors] == ["'idempotency_key' is a required property"]
