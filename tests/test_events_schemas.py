"""Event models: strict validation, dead-letter reasons, and schemas/ that cannot drift."""

from __future__ import annotations

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream import events as E
from stream.schemas import SCHEMA_DIR, expected_files

VALID = {"event_id": "e1", "type": "interaction.offered", "ts": "2026-11-23T10:00:00+01:00",
         "schema_version": 1, "interaction_id": "i1", "channel": "voice", "queue": "billing",
         "customer_id": "c1"}


def reason(raw: bytes, kind: str = "interactions") -> str:
    with pytest.raises(E.Rejected) as info:
        E.decode(raw, kind)
    return info.value.reason


def test_schema_files_match_the_code():
    for name, content in expected_files().items():
        path = SCHEMA_DIR / name
        assert path.exists(), f"{name} missing: run python -m stream.schemas"
        assert path.read_bytes() == content, f"{name} drifted from the code: run python -m stream.schemas"


def test_valid_event_decodes_and_matches_its_schema():
    ev = E.decode(orjson.dumps(VALID), "interactions")
    assert isinstance(ev, E.Offered) and ev.ts.utcoffset().total_seconds() == 3600
    schema = orjson.loads((SCHEMA_DIR / "event.schema.json").read_bytes())
    jsonschema.validate(VALID, schema)


@pytest.mark.parametrize("raw,expected", [
    (b'{"event_id": "e1", "type": "interaction.off', "invalid_json"),
    (b"\xff\xfe\x00garbage", "invalid_utf8"),
    (orjson.dumps({**VALID, "type": "interaction.teleported"}), "unknown_type"),
    (orjson.dumps({**VALID, "queue": "<b>x</b>"}), "bad_name"),
    (orjson.dumps({**VALID, "queue": "a" * 65}), "bad_name"),
    (orjson.dumps({**VALID, "ts": "2026-11-23T10:00:00"}), "bad_timestamp"),
    (orjson.dumps({**VALID, "ts": "yesterday"}), "bad_timestamp"),
    (orjson.dumps({k: v for k, v in VALID.items() if k != "queue"}), "missing_field"),
    (orjson.dumps({**VALID, "channel": "fax"}), "invalid_field"),
    (orjson.dumps({**VALID, "schema_version": 2}), "invalid_field"),
    (orjson.dumps({**VALID, "event_id": ""}), "invalid_field"),
    (orjson.dumps([1, 2]), "invalid_field"),
    (b"{}" + b" " * (E.MAX_RECORD_BYTES + 1), "too_large"),
    (orjson.dumps({"event_id": "a", "type": "agent.state_changed", "ts": VALID["ts"],
                   "schema_version": 1, "agent_id": "a1", "state": "busy"}), "wrong_topic"),
])
def test_bad_records_get_a_reason(raw, expected):
    assert reason(raw) == expected


def test_schema_and_model_agree_on_the_name_rule():
    schema = orjson.loads((SCHEMA_DIR / "interaction.offered.schema.json").read_bytes())
    text = orjson.dumps(schema).decode()
    assert E.NAME_PATTERN.replace("\\", "\\\\") in text


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(str.encode))
def test_fuzzed_bytes_never_crash_the_decoder(raw):
    try:
        E.decode(raw, "interactions")
    except E.Rejected as rej:
        assert rej.reason


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(list(VALID) + ["agent_id", "x"]),
                       st.none() | st.integers(-2**40, 2**40) | st.text(max_size=70) | st.lists(st.integers(0, 9), max_size=3)))
def test_model_and_json_schema_agree_on_acceptance(doc):
    """Whatever the decoder accepts, the published schema accepts too (and the reverse)."""
    schema = orjson.loads((SCHEMA_DIR / "interaction.offered.schema.json").read_bytes())
    doc = {**doc, "type": "interaction.offered"}
    raw = orjson.dumps(doc)
    try:
        E.decode(raw, "interactions")
        accepted = True
    except E.Rejected:
        accepted = False
    try:
        jsonschema.validate(doc, schema, format_checker=jsonschema.FormatChecker())
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    if accepted:
        assert schema_ok, doc
