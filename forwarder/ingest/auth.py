"""The authentication MoEngage Streams can use: HTTP Basic or a static header, compared in constant time."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Credentials:
    """What a request must carry. Both None only for an explicitly unauthenticated local demo."""

    basic: bytes | None = None  # the expected "Basic <base64>" value
    header_name: str | None = None
    header_value: bytes | None = None

    @classmethod
    def parse(cls, basic_auth: str | None, header: str | None) -> Credentials:
        basic = None
        if basic_auth:
            user, sep, password = basic_auth.partition(":")
            if not sep or not user or not password:
                raise ValueError("must be user:password")
            basic = b"Basic " + base64.b64encode(basic_auth.encode())
        name = value = None
        if header:
            name, sep, raw_value = header.partition(":")
            if not sep or not name.strip() or not raw_value.strip():
                raise ValueError("must be 'Name: value'")
            name, value = name.strip().lower(), raw_value.strip().encode()
        return cls(basic, name, value)

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
