"""Amplitude HTTP V2 / Batch request and response shapes (shared/spec/amplitude-api.md).

Events are TypedDicts, not models: the forwarder builds hundreds of thousands a second and the mapping
already guarantees their shape, so validating them again would only cost time.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict


class AmplitudeEvent(TypedDict):
    event_type: str
    time: int
    insert_id: str
    event_properties: dict[str, Any]
    # {"$set": {...}, "$setOnce": {...}}: only with FORWARDER_USER_PROPERTIES.
    user_properties: NotRequired[dict[str, dict[str, Any]]]
    user_id: NotRequired[str]
    device_id: NotRequired[str]


class RequestOptions(TypedDict, total=False):
    min_id_length: int


class UploadRequest(TypedDict):
    api_key: str
    events: list[AmplitudeEvent]
    options: NotRequired[RequestOptions]


class SuccessResponse(BaseModel):
    model_config = ConfigDict(extra="allow")
    code: int = 200
    events_ingested: int = 0
    payload_size_bytes: int = 0
    server_upload_time: int = 0


class InvalidRequestResponse(BaseModel):
    """400: the listed events are rejected; the others were not ingested and should be re-sent."""

    model_config = ConfigDict(extra="allow")
    code: int = 400
    error: str = ""
    missing_field: str | None = None
    events_with_invalid_fields: dict[str, list[int]] = {}
    events_with_missing_fields: dict[str, list[int]] = {}
    events_with_invalid_id_lengths: dict[str, list[int]] = {}
    silenced_devices: list[str] = []
    silenced_events: list[int] = []


class ThrottledResponse(BaseModel):
    """429: throttled events may be re-sent after a pause; daily-quota ones will not be accepted today."""

    model_config = ConfigDict(extra="allow")
    code: int = 429
    error: str = ""
    eps_threshold: int = 0
    throttled_devices: dict[str, int] = {}
    throttled_users: dict[str, int] = {}
    throttled_events: list[int] = []
    exceeded_daily_quota_users: dict[str, int] = {}
    exceeded_daily_quota_devices: dict[str, int] = {}
