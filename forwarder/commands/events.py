"""``forwarder events``: the event catalogue, as a table or JSON."""

from __future__ import annotations

import argparse
import json

from forwarder.command import Command
from schemas.catalogue import CATALOGUE


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["table", "json"], default="table")


def _run(args: argparse.Namespace) -> int:
    if args.format == "json":
        fields = ("name", "code", "type", "channel", "description")
        rows = [{**{f: getattr(e, f) for f in fields}, "aliases": list(e.aliases)} for e in CATALOGUE.events]
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(e.code) for e in CATALOGUE.events)
    for e in CATALOGUE.events:
        aliases = f"  (also {', '.join(e.aliases)})" if e.aliases else ""
        print(f"{e.code:<{width}}  {e.type:<11}  {e.channel:<19}  {e.name}{aliases}")
    return 0


COMMAND = Command(_arguments, _run)
