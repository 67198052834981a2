"""Property-based contract test: schemathesis against the running API's OpenAPI document.

Every operation gets generated requests, valid and invalid, with a valid token. The
checks assert no 5xx, status codes and bodies that match the document, and 401 when
the token is left out. The number of examples per operation is capped so the test
takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.api.conftest import TOKENS

pytestmark = pytest.mark.slow


DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"

# The checked-in document, which test_served_document_equals_checked_in compares with
# the one the server publishes. schemathesis's lazy from_fixture loader fails on
# pytest 9 (it reads a removed node attribute), so the schema is loaded at import.
schema = schemathesis.openapi.from_path(DOCUMENT)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_api_conforms_to_openapi(case, api_server):
    case.call_and_validate(
        base_url=api_server.url, headers={"Authorization": f"Bearer {TOKENS[0]}"}
    )


def test_served_document_equals_checked_in(api_server):
    served = httpx.get(f"{api_server.url}/openapi.json", timeout=30).json()

    assert served == json.loads(DOCUMENT.read_text(encoding="utf-8"))
