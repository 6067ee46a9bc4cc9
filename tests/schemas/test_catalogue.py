from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from schemas.catalogue import CATALOGUE

SHARED_TSV = Path(__file__).resolve().parents[3] / "shared" / "spec" / "event-codes.tsv"


def test_the_packaged_catalogue_is_the_shared_one() -> None:
    packaged = (Path(__file__).resolve().parents[2] / "schemas" / "event_codes.tsv").read_text()
    assert packaged == SHARED_TSV.read_text()


def test_aliases_resolve_to_their_canonical_event() -> None:
    viewed = CATALOGUE.by_code("MOE_CARD_IMPRESSION")
    assert viewed is not None
    assert viewed.code == "MOE_CARD_CAMPAIGN_VIEWED"
    assert CATALOGUE.by_code("WEBHOOK_SENT").name == "Connector Sent"  # type: ignore[union-attr]
    assert CATALOGUE.by_code("NOT_A_CODE") is None


def test_forwarder_events_lists_the_catalogue() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "forwarder", "events", "--format", "json"], capture_output=True, check=True, text=True
    ).stdout
    rows = json.loads(out)
    assert len(rows) == 44
    assert rows[0]["code"] == "n_c_s"
    table = subprocess.run(
        [sys.executable, "-m", "forwarder", "events"], capture_output=True, check=True, text=True
    ).stdout
    assert "MOE_CARD_CAMPAIGN_VIEWED" in table
    assert "also MOE_CARD_VIEWED, MOE_CARD_IMPRESSION" in table
