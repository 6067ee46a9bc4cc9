"""``forwarder backfill``: history from MoEngage's data exports (or saved Streams bodies) into Amplitude.

Files or folders of ``.json``, ``.jsonl`` and their ``.gz``; export records (``{"export_doc_id", "event"}``),
Streams bodies and single events alike, through the same core as the live path, so the ``insert_id``s are the
same and Amplitude de-duplicates an overlap with live traffic. Sent with the Batch API by default.

Resumable: after every batch whose events are all final (delivered, filtered, dropped or dead-lettered), the
position (file, line) is written to a checkpoint file, atomically. A run killed at any moment sends at most that
one batch again when it is started again with the same arguments. ``--restart`` starts over.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gzip
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

import orjson
from tqdm import tqdm

from forwarder import logs
from forwarder.command import Command, require_kafka, usage_error
from forwarder.commands.replay import RateLimiter, Sending, mapped, parse_time, replay_routes, sending_arguments
from forwarder.commands.transform import inputs
from forwarder.core.pipeline import MappingRules
from forwarder.core.select import Selection
from forwarder.kafka.dead_letters import SourceRef
from forwarder.processing import BatchProcessor, BatchSummary, SourceMessage
from forwarder.routes import RouteTable
from forwarder.settings import BackfillSettings, load_settings
from forwarder.summary import print_summary
from forwarder.wiring import processing_stack

SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")


@dataclass(frozen=True, slots=True)
class Position:
    """Everything before this (file index, line) has a final outcome."""

    file: int
    line: int


def find_files(paths: list[str]) -> list[Path]:
    """The input files, in a stable order (so a checkpoint's file index means the same file again)."""
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES)))
        elif path.is_file():
            found.append(path)
        else:
            raise usage_error(f"no such file or folder: {name}")
    if not found:
        raise usage_error(f"no {', '.join(SUFFIXES)} files in {', '.join(paths)}")
    return found


def _open(path: Path) -> tuple[IO[bytes], IO[bytes]]:
    """(stream of the content, the file on disk: its position is the progress)."""
    raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed by the caller, with the gzip reader over it
    if path.name.endswith(".gz"):
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw)), raw
    return raw, raw


class Progress:
    """Bytes of input read across all files: the progress bar and its ETA."""

    def __init__(self, bar: tqdm) -> None:
        self._bar = bar
        self._last = 0

    def next_file(self) -> None:
        self._last = 0

    def at(self, position: int) -> None:
        if position > self._last:
            self._bar.update(position - self._last)
            self._last = position


def read_inputs(path: Path, on_progress: Progress) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes of one input). JSON Lines stream line by line; a ``.json`` file is one document (or
    JSON Lines, decided as ``transform`` decides). A file that cannot be read (a truncated gzip) stops the run
    with one line; what was final before it is in the checkpoint."""
    stream, raw = _open(path)
    try:
        if path.name.removesuffix(".gz").endswith(".jsonl"):
            for number, line in enumerate(stream, start=1):
                if line.strip():
                    yield number, line
                on_progress.at(raw.tell())
        else:
            data = stream.read()
            on_progress.at(raw.tell())
            for index, (_, raw_input) in enumerate(inputs(data), start=1):
                yield index, raw_input
    except (OSError, EOFError) as exc:
        raise usage_error(
            f"cannot read {path}: {exc}; fix or remove it and run again (the run resumes where it stopped)"
        ) from None
    finally:
        stream.close()
        raw.close()


class Checkpoint:
    """Where a killed run starts again: the inputs' fingerprint and the position, written atomically."""

    def __init__(self, path: Path, fingerprint: str) -> None:
        self.path = path
        self.fingerprint = fingerprint

    def load(self) -> Position | None:
        try:
            state = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, orjson.JSONDecodeError) as exc:
            raise usage_error(f"the checkpoint {self.path} cannot be read ({exc}); use --restart") from None
        if state.get("fingerprint") != self.fingerprint:
            raise usage_error(f"the input files changed since the checkpoint {self.path}; use --restart")
        return Position(int(state["file"]), int(state["line"]))

    def save(self, position: Position) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        temporary.write_bytes(
            orjson.dumps({"fingerprint": self.fingerprint, "file": position.file, "line": position.line})
        )
        os.replace(temporary, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _fingerprint(files: list[Path], selection: Selection, window: tuple[int, int] | None, api: str) -> str:
    parts = [f"{p.resolve()}:{p.stat().st_size}" for p in files] + [selection.text, str(window), api]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class BackfillRequest:
    """``forwarder backfill``: the files, the selection and window, how to send."""

    paths: list[str]
    events: str | None
    start: str | None
    end: str | None
    restart: bool
    sending: Sending


@dataclass(frozen=True)
class _Run:
    files: list[Path]
    routes: RouteTable
    sending: Sending
    checkpoint: Checkpoint
    dead_letters_file: Path


async def _backfill(settings: BackfillSettings, run: _Run) -> tuple[BatchSummary, str]:
    dry_run = run.sending.dry_run
    start = (None if dry_run else run.checkpoint.load()) or Position(0, 0)
    summary = BatchSummary()
    async with contextlib.AsyncExitStack() as exits:
        processor: BatchProcessor | None = None
        where = "none (dry run)"
        if not dry_run:
            stack = await exits.enter_async_context(
                processing_stack(
                    settings,
                    run.routes,
                    api=run.sending.api,
                    dead_letters_file=run.dead_letters_file,
                    source="backfill",
                )
            )
            processor, where = stack.processor, stack.dead_letters_at
        await _send(run, settings, processor, start, summary)
        if not dry_run:
            run.checkpoint.save(Position(len(run.files), 0))
    return summary, where


async def _send(
    run: _Run, settings: BackfillSettings, processor: BatchProcessor | None, start: Position, summary: BatchSummary
) -> None:
    """Reads the files from ``start`` and processes them in batches (a dry run: ``processor`` None)."""
    files, routes, checkpoint, limiter = run.files, run.routes, run.checkpoint, RateLimiter(run.sending.rate)
    batch: list[SourceMessage] = []
    batch_bytes = 0

    async def flush(position: Position) -> None:
        nonlocal batch, batch_bytes
        if not batch:
            return
        if processor is None:
            done = BatchSummary(messages=len(batch))
            for message in batch:
                for outcome in mapped(routes, message.value, None):
                    done.outcomes.count(outcome)
        else:
            done = await processor.process(batch)
            checkpoint.save(position)
        summary.add(done)
        batch, batch_bytes = [], 0
        await limiter.take(max(1, done.read))

    sizes = [p.stat().st_size for p in files]
    with tqdm(
        total=sum(sizes),
        initial=sum(sizes[: start.file]),
        desc="backfill",
        unit="B",
        unit_scale=True,
        file=sys.stderr,
    ) as bar:
        progress = Progress(bar)
        for index, path in enumerate(files):
            if index < start.file:
                continue
            progress.next_file()
            for line, raw in read_inputs(path, progress):
                if index == start.file and line <= start.line:
                    continue
                batch.append(SourceMessage(SourceRef(f"file:{path}", 0, line, None), raw))
                batch_bytes += len(raw)
                if len(batch) >= settings.worker.batch_max_messages or batch_bytes >= settings.worker.batch_max_bytes:
                    await flush(Position(index, line))
            await flush(Position(index, sys.maxsize))


def backfill(settings: BackfillSettings, request: BackfillRequest) -> int:
    files = find_files(request.paths)
    try:
        selection = Selection.parse(request.events) if request.events else None
        window = None
        if request.start or request.end:
            window = (
                parse_time(request.start) if request.start else 0,
                parse_time(request.end) if request.end else 2**62,
            )
    except ValueError as exc:
        raise usage_error(str(exc)) from None
    if window is not None and window[1] <= window[0]:
        raise usage_error("--to must be after --from")

    def chosen(rules: MappingRules) -> MappingRules:
        return dataclasses.replace(rules, selection=selection or rules.selection, window=window)

    sending = request.sending
    routes = replay_routes(settings, sending.route).with_rules(chosen)
    fingerprint = _fingerprint(files, selection or Selection.parse(settings.worker.events), window, sending.api)
    if sending.route:
        fingerprint = f"{fingerprint}-{sending.route}"
    checkpoint = Checkpoint(Path(settings.state.directory) / "backfill" / f"{fingerprint}.json", fingerprint)
    if request.restart:
        checkpoint.remove()
    dead_letters_file = Path(f"backfill-dead-letters-{fingerprint}.jsonl").resolve()
    started = time.monotonic()
    summary, where = asyncio.run(_backfill(settings, _Run(files, routes, sending, checkpoint, dead_letters_file)))
    elapsed = time.monotonic() - started
    print_summary(summary, sending.dry_run)
    if not sending.dry_run:
        rate_now = summary.read / elapsed if elapsed > 0 else 0.0
        where = where if summary.dead_lettered else "none"
        print(f"{len(files)} files in {elapsed:.1f} s ({rate_now:,.0f} events/s); dead letters: {where}")
        print(f"checkpoint: {checkpoint.path} (all done; --restart to send again)")
    return 0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help=".json, .jsonl or their .gz; folders are searched")
    parser.add_argument("--events", metavar="SELECTION", help="default: FORWARDER_EVENTS")
    parser.add_argument("--from", dest="start", metavar="ISO_TIME", help="only events at or after (event time)")
    parser.add_argument("--to", dest="end", metavar="ISO_TIME", help="only events before (event time)")
    parser.add_argument("--restart", action="store_true", help="ignore the checkpoint of an earlier run")
    sending_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(BackfillSettings)
    logs.setup("WARNING")
    if settings.kafka.bootstrap_servers and not args.dry_run:
        require_kafka(settings)
    request = BackfillRequest(args.paths, args.events, args.start, args.end, args.restart, Sending.of(args))
    return backfill(settings, request)


COMMAND = Command(_arguments, _run)
