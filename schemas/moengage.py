"""MoEngage Streams request body and event, as documented (shared/spec/moengage-streams.md).

Lenient on purpose: accounts vary in case, types and extra keys, so ids may be numbers or strings and
unknown keys are kept. The forwarder's hot path reads plain dicts (see ``forwarder.core``); these models
describe the shape, for documentation: nothing is refused for what an event holds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

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
    """The Streams request body as documented. Descriptive only: ``forwarder ingest`` stores every JSON object and
    the worker judges each event (one bad event must not cost its batch, which MoEngage drops after three refused
    retries), so nothing here is enforced at the door."""

    model_config = ConfigDict(extra="allow")

    app_name: Any = None
    source: Any = None
    moe_request_id: Any = None
    events: list[Any] = Field(default_factory=list)
