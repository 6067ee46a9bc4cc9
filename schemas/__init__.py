"""What the data is: the MoEngage Streams input, the Amplitude output, and the event catalogue."""

from schemas.catalogue import CATALOGUE, Catalogue, EventDefinition

__all__ = ["CATALOGUE", "Catalogue", "EventDefinition"]
