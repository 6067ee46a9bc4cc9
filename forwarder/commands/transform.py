"""``forwarder transform``: the pure core over a file, for dry runs and for checking a captured payload.

Each input goes through ``process_message``, as a Kafka message does in the worker, so the same bytes are counted
the same way (the worker's size limit aside: a file may be larger than a message).
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from forwarder.command import Command, CommandError, usage_error
from forwarder.core.counting import OutcomeCounter
from forwarder.core.decode import DecodeError, load_json
from forwarder.core.identify import AMPLITUDE_DEFAULT_MIN_ID_LENGTH
from forwarder.core.outcomes import EventWarning, Forwarded, Invalid
from forwarder.core.pipeline import MappingRules, process_message
from forwarder.core.property_memory import PropertyMemory
from forwarder.core.select import Selection
from forwarder.settings import TransformSettings, load_settings


def _is_record(line: bytes) -> bool:
    loaded = load_json(line)
    return not isinstance(loaded, DecodeError) and isinstance(loaded[0], dict | list)


def inputs(data: bytes) -> Iterator[tuple[str, bytes]]:
    """(where, bytes of one input): the whole data when it is one JSON document, else JSON Lines.

    Data that does not parse whole is JSON Lines only when its first or second non-blank line is a whole JSON
    object or array by itself: the lines of a pretty-printed document never are, so a broken document is one
    invalid input with its real reason, not one per physical line.
    """
    # The cheap question first: a valid document is then parsed once (by the caller), not here as well.
    head = list(itertools.islice((line for line in io.BytesIO(data) if line.strip()), 2))
    if len(head) > 1 and any(_is_record(line) for line in head) and isinstance(load_json(data), DecodeError):
        for number, line in enumerate(data.splitlines(), start=1):
            if line.strip():
                yield f"line {number}", line
        return
    yield "input", data


@dataclass
class TransformCounts:
    outcomes: OutcomeCounter = field(default_factory=OutcomeCounter)
    # EventWarning kinds: events still sent (or repaired) that a user would want to know about.
    warnings: Counter[str] = field(default_factory=Counter)
    # (property, action) -> events a FORWARDER_PII rule changed.
    pii: Counter[tuple[str, str]] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """The ``--summary`` file: ``{"read","forwarded","filtered","dropped":{reason:n},"invalid","warnings",
        "pii":{property:{action:n}}}``."""
        outcomes = self.outcomes
        pii: dict[str, dict[str, int]] = {}
        for (name, action), count in sorted(self.pii.items()):
            pii.setdefault(name, {})[action] = count
        return {
            "read": outcomes.read,
            "forwarded": outcomes.total("forwarded"),
            "filtered": outcomes.total("filtered"),
            "dropped": dict(sorted(outcomes.reasons("dropped").items())),
            "invalid": outcomes.total("dead_lettered"),
            "warnings": dict(sorted(self.warnings.items())),
            "pii": pii,
        }


def transform(
    data: bytes, rules: MappingRules, out: IO[bytes], errors: IO[str], memory_size: int = 100_000
) -> TransformCounts:
    """``memory_size``: users whose user-property values are remembered within the run (as the worker does; here
    every event counts as accepted)."""
    counts = TransformCounts()
    seen_insert_ids: set[str] = set()
    position = 0
    memory = PropertyMemory(memory_size) if rules.user_properties is not None else None

    def warn(where: str, warning: EventWarning) -> None:
        counts.warnings[warning.kind] += 1
        print(f"{where}: {warning.text}", file=errors)

    for where, raw in inputs(data):
        result = process_message(raw, rules, max_bytes=len(raw))
        if result.error is not None:
            print(f"{where}: invalid ({result.error.reason}): {result.error.detail}", file=errors)
        for outcome in result.outcomes:
            position += 1
            counts.outcomes.count(outcome)
            label = f"event {position} ({outcome.code})" if outcome.code else f"event {position}"
            if result.repaired:
                request = f" (moe_request_id {result.request_id})" if result.request_id else ""
                warn(label, EventWarning("repaired_utf8", f"bytes that are not UTF-8 were replaced{request}"))
            if isinstance(outcome, Forwarded):
                if memory is not None:
                    memory.offer(outcome)  # accepted at once: nothing here refuses it
                counts.pii.update(outcome.pii)
                out.write(outcome.encoded + b"\n")
                for warning in outcome.warnings:
                    warn(label, warning)
                insert_id = outcome.event["insert_id"]
                if insert_id in seen_insert_ids:
                    text = f"insert_id {insert_id!r} repeats an earlier event's: Amplitude keeps only one of them"
                    warn(label, EventWarning("duplicate_insert_id", text))
                seen_insert_ids.add(insert_id)
            elif isinstance(outcome, Invalid) and result.error is None and outcome.detail:
                print(f"{label}: invalid ({outcome.reason}): {outcome.detail}", file=errors)
    return counts


def read_input(path: str | None) -> bytes:
    if path is None or path == "-":
        return sys.stdin.buffer.read()
    with open(path, "rb") as handle:
        return handle.read()


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", nargs="?", help="a file; standard input when absent or '-'")
    parser.add_argument(
        "--events",
        default="all",
        metavar="SELECTION",
        help="codes, channels, types or 'all' (default), comma-separated",
    )
    parser.add_argument("--min-id-length", type=int, default=AMPLITUDE_DEFAULT_MIN_ID_LENGTH, metavar="N")
    parser.add_argument("--summary", metavar="PATH", help="write outcome counts as JSON to PATH")


def _run(args: argparse.Namespace) -> int:
    try:
        selection = Selection.parse(args.events)
    except ValueError as exc:
        raise usage_error(f"--events: {exc}") from None
    if args.min_id_length < 1:
        raise usage_error("--min-id-length must be at least 1")
    try:
        data = read_input(args.input)
    except OSError as exc:
        raise usage_error(f"cannot read {args.input}: {exc.strerror}") from None
    if (note := selection.describe_extra()) is not None:
        print(f"forwarder transform: --events: {note}", file=sys.stderr)
    properties = load_settings(TransformSettings).properties
    rules = MappingRules(
        selection=selection,
        min_id_length=args.min_id_length,
        user_properties=properties.user_property_rules(),
        pii=properties.pii_rules(),
    )
    counts = transform(data, rules, sys.stdout.buffer, sys.stderr, properties.user_properties_cache)
    sys.stdout.buffer.flush()
    if args.summary:
        try:
            with open(args.summary, "w", encoding="utf-8") as handle:
                json.dump(counts.summary(), handle, indent=2)
                handle.write("\n")
        except OSError as exc:
            raise CommandError(f"cannot write {args.summary}: {exc.strerror}") from None
    return 0


COMMAND = Command(_arguments, _run)
