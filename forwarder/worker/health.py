"""What the worker reports to orchestrators: alive, and ready only while it is consuming."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Health:
    consuming: bool = False
    # Set when Amplitude refused the configuration (invalid key): not ready, and says why.
    fatal: str | None = None

    def readiness(self) -> tuple[dict[str, Any], bool]:
        if self.fatal:
            return {"status": "failed", "reason": self.fatal}, False
        if not self.consuming:
            return {"status": "starting"}, False
        return {"status": "ready"}, True
