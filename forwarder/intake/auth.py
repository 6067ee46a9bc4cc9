"""The authentication MoEngage Streams can use: HTTP Basic or a static header, compared in constant time."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from forwarder.settings import IngestSettings


@dataclass(frozen=True)
class Credentials:
    """What a request must carry. Both None only for an explicitly unauthenticated local demo."""

    basic: bytes | None = None  # the expected "Basic <base64>" value
    header_name: str | None = None
    header_value: bytes | None = None

    @classmethod
    def parse(cls, basic_auth: str | None, header: str | None) -> Credentials:
        """From ``user:password`` and ``Name: value``, whose shapes the settings (``IngestSettings``) checked."""
        basic = b"Basic " + base64.b64encode(basic_auth.encode()) if basic_auth else None
        name = value = None
        if header:
            raw_name, _, raw_value = header.partition(":")
            name, value = raw_name.strip().lower(), raw_value.strip().encode()
        return cls(basic, name, value)

    @classmethod
    def of(cls, settings: IngestSettings) -> Credentials:
        return cls.parse(
            settings.basic_auth.get_secret_value() if settings.basic_auth else None,
            settings.header.get_secret_value() if settings.header else None,
        )

    @property
    def required(self) -> bool:
        return self.basic is not None or self.header_name is not None

    def allows(self, headers: Mapping[str, str]) -> bool:
        """True when every configured credential matches; each compare takes the same time for any input."""
        ok = True
        if self.basic is not None:
            ok &= hmac.compare_digest(headers.get("authorization", "").encode(), self.basic)
        if self.header_name is not None and self.header_value is not None:
            ok &= hmac.compare_digest(headers.get(self.header_name, "").encode(), self.header_value)
        return ok
