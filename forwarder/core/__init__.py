"""The pure core: decode -> select -> identify -> map. No I/O and nothing here imports an edge."""

from forwarder.core.counting import OutcomeCounter
from forwarder.core.outcomes import Dropped, Filtered, Forwarded, Invalid, Outcome
from forwarder.core.pipeline import MappingRules, process_event, process_message
from forwarder.core.select import Selection

__all__ = [
    "Dropped",
    "Filtered",
    "Forwarded",
    "Invalid",
    "MappingRules",
    "Outcome",
    "OutcomeCounter",
    "Selection",
    "process_event",
    "process_message",
]
