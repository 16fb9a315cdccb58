"""The spec front end: schema, loader, importers."""

from __future__ import annotations

import json

SCHEMA_ID = "urn:specc:spec:v1"


def json_schema() -> dict:
    """JSON Schema of a spec file, for editors (yaml-language-server) and other validators."""
    from specc.spec.schema import Spec

    schema = Spec.model_json_schema(mode="validation")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "specc spec (v1)",
        **{k: v for k, v in schema.items() if k != "title"},
    }


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
