"""Event models, decoding and validation: the code behind `schemas/`.

Every record is decoded straight from raw bytes into one typed msgspec Struct (a tagged
union on `type`), which is both the fastest path and the strict validator. A record that
fails is classified into a short, stable reason for the dead-letter topic and the
`cc_events_rejected_total{reason}` counter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, Union

import msgspec

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"

Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN, description="scope/label name")]
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Timestamp = Annotated[datetime, msgspec.Meta(tz=True, description="RFC 3339 with offset")]
Channel = Literal["voice", "chat", "sms"]
Disposition = Literal["resolved", "unresolved", "follow_up", "escalated"]
AgentState = Literal["available", "busy", "acw", "aux", "offline"]
Direction = Literal["customer", "agent"]
Opaque = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
ShortText = Annotated[str, msgspec.Meta(max_length=256)]
Language = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,8})*$")]


class Envelope(msgspec.Struct, tag_field="type", frozen=True, kw_only=True):
    event_id: EventId
    ts: Timestamp
    schema_version: Literal[1]


class _Interaction(Envelope, frozen=True, kw_only=True):
    interaction_id: Opaque
    channel: Channel
    queue: Name


class Offered(_Interaction, tag="interaction.offered", frozen=True, kw_only=True):
    customer_id: Opaque | None = None


class Answered(_Interaction, tag="interaction.answered", frozen=True, kw_only=True):
    agent_id: Name


class HoldStarted(_Interaction, tag="interaction.hold_started", frozen=True, kw_only=True):
    agent_id: Name


class HoldEnded(_Interaction, tag="interaction.hold_ended", frozen=True, kw_only=True):
    agent_id: Name


class Transferred(_Interaction, tag="interaction.transferred", frozen=True, kw_only=True):
    agent_id: Name
    to_queue: Name


class Abandoned(_Interaction, tag="interaction.abandoned", frozen=True, kw_only=True):
    pass


class Ended(_Interaction, tag="interaction.ended", frozen=True, kw_only=True):
    agent_id: Name


class WrapupCompleted(_Interaction, tag="interaction.wrapup_completed", frozen=True, kw_only=True):
    agent_id: Name
    disposition: Disposition | None = None  # unknown for some replayed call logs
    reason: ShortText | None = None


class Message(_Interaction, tag="interaction.message", frozen=True, kw_only=True):
    direction: Direction
    text: Annotated[str, msgspec.Meta(max_length=4000)]
    agent_id: Name | None = None
    language: Language | None = None


class AgentStateChanged(Envelope, tag="agent.state_changed", frozen=True, kw_only=True):
    agent_id: Name
    state: AgentState
    reason: ShortText | None = None
    queues: Annotated[list[Name], msgspec.Meta(max_length=64)] = []
    capacity: Annotated[dict[Channel, Annotated[int, msgspec.Meta(ge=0, le=100)]],
                        msgspec.Meta(max_length=3)] = {}


class SurveyResponded(Envelope, tag="survey.responded", frozen=True, kw_only=True):
    interaction_id: Opaque
    customer_id: Opaque | None = None
    nps: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    csat: Annotated[int, msgspec.Meta(ge=1, le=5)] | None = None
    ces: Annotated[int, msgspec.Meta(ge=1, le=7)] | None = None


InteractionEvent = Union[Offered, Answered, HoldStarted, HoldEnded, Transferred, Abandoned,
                         Ended, WrapupCompleted, Message]
Event = Union[InteractionEvent, AgentStateChanged, SurveyResponded]

EVENT_TYPES: dict[str, type[Envelope]] = {
    cls.__struct_config__.tag: cls  # type: ignore[misc]
    for cls in (Offered, Answered, HoldStarted, HoldEnded, Transferred, Abandoned, Ended,
                WrapupCompleted, Message, AgentStateChanged, SurveyResponded)
}

TOPIC_TYPES = {
    "interactions": InteractionEvent,
    "agents": AgentStateChanged,
    "surveys": SurveyResponded,
}

_decoders = {kind: msgspec.json.Decoder(tp) for kind, tp in TOPIC_TYPES.items()}
_any_decoder = msgspec.json.Decoder(Event)
_probe = msgspec.json.Decoder()
MAX_RECORD_BYTES = 64 * 1024


class Rejected(Exception):
    """A record that is bad input; `reason` is a short stable code, `detail` says more."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def classify(exc: msgspec.MsgspecError, raw: bytes) -> Rejected:
    """Turn a msgspec error into a dead-letter reason."""
    msg = str(exc)
    if not isinstance(exc, msgspec.ValidationError):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return Rejected("invalid_utf8", msg[:200])
        return Rejected("invalid_json", msg[:200])
    if "`$.type`" in msg or "missing required field `type`" in msg:
        return Rejected("unknown_type", msg[:200])
    if "matching regex" in msg and any(f"`$.{n}" in msg for n in
                                       ("queue", "agent_id", "to_queue", "queues")):
        return Rejected("bad_name", msg[:200])
    if "`$.ts`" in msg:
        return Rejected("bad_timestamp", msg[:200])
    if "missing required field" in msg:
        return Rejected("missing_field", msg[:200])
    return Rejected("invalid_field", msg[:200])


def decode(raw: bytes | None, kind: str) -> Event:
    """Decode and validate one record for the topic `kind`; raises Rejected."""
    if raw is None:
        raise Rejected("invalid_json", "empty record")
    if len(raw) > MAX_RECORD_BYTES:
        raise Rejected("too_large", f"{len(raw)} bytes")
    if not raw.isascii():  # msgspec skips unknown keys without checking their UTF-8
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Rejected("invalid_utf8", str(exc)[:200]) from None
    try:
        return _decoders[kind].decode(raw)
    except RecursionError:  # deep nesting (`[[[[…`) well under the size limit
        raise Rejected("invalid_json", "JSON nested too deeply") from None
    except UnicodeDecodeError as exc:  # msgspec raises it for invalid UTF-8 inside a tag
        raise Rejected("invalid_utf8", str(exc)[:200]) from None
    except msgspec.MsgspecError as exc:
        rejected = classify(exc, raw)
        if rejected.reason == "unknown_type":
            # a known type on the wrong topic is its own reason
            try:
                _any_decoder.decode(raw)
            except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError):
                pass
            else:
                rejected = Rejected("wrong_topic", f"not a {kind} event")
        raise rejected from None


def type_name(event: Envelope) -> str:
    return event.__struct_config__.tag  # type: ignore[return-value]


def json_schemas() -> dict[str, dict]:
    """JSON Schemas (2020-12) per event type and for the whole union, from the models."""
    out: dict[str, dict] = {}
    for name, cls in EVENT_TYPES.items():
        schema = msgspec.json.schema(cls)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = name
        out[f"{name}.schema.json"] = schema
    union = msgspec.json.schema(Event)
    union["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    union["title"] = "ccpulse event"
    out["event.schema.json"] = union
    return out
