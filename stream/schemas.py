"""Write `schemas/` from the code: event schemas come from the msgspec models, so they cannot drift.

Run `python -m stream.schemas` after changing `events.py`; a test fails if the files differ.
The snapshot schema (`snapshot.schema.json`) documents the `cc:snapshot` document.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from .events import json_schemas

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

_num_map = {"type": "object", "additionalProperties": {"type": "number"}}
SNAPSHOT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "ccpulse cc:snapshot",
    "description": "One JSON document with every KPI, load figure, today's intervals and "
                   "at-risk contacts; a wallboard reads it with a single GET.",
    "type": "object",
    "required": ["version", "as_of", "updated_at", "timezone", "queues", "kpi", "load",
                 "intervals", "atrisk"],
    "properties": {
        "version": {"const": 1},
        "as_of": {"type": "string", "format": "date-time"},
        "updated_at": {"type": "string", "format": "date-time"},
        "timezone": {"type": "string"},
        "queues": {"type": "array", "items": {"type": "string"}},
        "kpi": {"type": "object", "description": "scope -> window (15m|1h|today) -> KPI fields",
                "additionalProperties": {"type": "object",
                                         "propertyNames": {"enum": ["15m", "1h", "today"]},
                                         "additionalProperties": _num_map}},
        "load": {"type": "object", "description": "scope -> live load fields",
                 "additionalProperties": _num_map},
        "intervals": {"type": "object", "description": "scope -> today's 15-minute intervals",
                      "additionalProperties": {"type": "array", "items": {
                          "type": "object", "required": ["start"],
                          "properties": {"start": {"type": "string"}},
                          "additionalProperties": {"type": ["number", "string"]}}}},
        "atrisk": {"type": "object", "additionalProperties": {"type": "array", "items": {
            "type": "object", "required": ["interaction_id", "queue", "agent_id", "score"],
            "properties": {"interaction_id": {"type": "string"}, "queue": {"type": "string"},
                           "agent_id": {"type": "string"}, "score": {"type": "number"},
                           "since": {"type": ["string", "null"]}}}}},
    },
}


def expected_files() -> dict[str, bytes]:
    files = {name: schema for name, schema in json_schemas().items()}
    files["snapshot.schema.json"] = SNAPSHOT_SCHEMA
    return {name: orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
            for name, doc in files.items()}


def main() -> int:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for name, content in expected_files().items():
        (SCHEMA_DIR / name).write_bytes(content)
    print(f"wrote {len(expected_files())} schemas to {SCHEMA_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
