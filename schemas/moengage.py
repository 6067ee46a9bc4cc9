"""MoEngage Streams request body and event, as documented (shared/spec/moengage-streams.md).

Lenient on purpose: accounts vary in case, types and extra keys, so ids may be numbers or strings and
unknown keys are kept. The forwarder's hot path reads plain dicts (see ``forwarder.core``); these models
describe the shape for validation at the ingestion edge and for documentation.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

Scalar = str | int | float


class StreamsEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    event_name: str | None = None
    event_code: str | None = None
    event_uuid: Scalar | None = None
    # Epoch seconds in MoEngage's documentation; milliseconds and ISO-8601 strings are tolerated.
    event_time: Scalar | None = None
    event_type: str | None = None
    event_source: str | None = None
    uid: Scalar | None = None
    push_id: Scalar | None = None
    email_id: Scalar | None = None
    mobile_number: Scalar | None = None
    event_attributes: dict[str, Any] | None = None
    user_attributes: dict[str, Any] | None = None
    device_attributes: dict[str, Any] | None = None


class StreamsRequest(BaseModel):
    """What the ingestion endpoint accepts. MoEngage drops a batch after three refused retries, so only what
    makes a batch unusable is refused: the envelope's other fields are kept whatever their type."""

    model_config = ConfigDict(extra="allow")

    app_name: Any = None
    source: str | None = None
    moe_request_id: Any = None
    events: list[dict[str, Any]] = Field(min_length=1)

    @field_validator("source")
    @classmethod
    def _source_is_moengage(cls, value: str | None) -> str | None:
        # Samples say MOENGAGE, prose says MoEngage: compare without case.
        if value is not None and value.casefold() != "moengage":
            raise ValueError("must be MoEngage")
        return value

    @field_validator("events")
    @classmethod
    def _events_are_events(cls, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for index, event in enumerate(events):
            if "event_code" not in event and "event_name" not in event:
                raise ValueError(f"events[{index}] has neither event_code nor event_name")
        return events
