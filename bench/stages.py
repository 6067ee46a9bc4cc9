"""Where a worker's CPU goes, per event, stage by stage, on the benchmark's traffic (``make bench-stages``).

Each stage runs alone over the same 200,000 events (90 % in Streams bodies of 100, 10 % single), timed with
the process's CPU clock; the HTTP client posts to a local Amplitude service in another process, so only the
client's side is counted. faust's own cost per record (fetch, stream, ack, commit) is the floor ``make bench``
measures: an ack-only agent on the same topic. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from pydantic import SecretStr

from bench.run import OUT, say, traffic
from devkit.kafka import free_port, stop_pid
from forwarder.amplitude.client import AmplitudeClient
from forwarder.amplitude.delivery import DeliveryReport
from forwarder.amplitude.encoding import BodyBuilder, chunk_indexes
from forwarder.amplitude.limits import HTTP_V2
from forwarder.core import Forwarded, MappingRules
from forwarder.core.decode import decode_message
from forwarder.core.pipeline import process_message
from forwarder.kafka.dead_letters import SourceRef
from forwarder.ledger.records import LedgerRecord
from forwarder.processing import BatchProcessor, SourceMessage
from forwarder.worker.app import settle_heap
from forwarder.worker.metrics import Metrics


def cpu(action: Callable[[], Any], repeat: int = 5) -> float:
    """Least CPU seconds of ``repeat`` runs (the least disturbed by the machine's other work), each starting
    from a collected heap and dropping what it built before the clock stops."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.process_time()
        action()
        best = min(best, time.process_time() - start)
    return best


class Instant:
    """A deliverer that delivers everything at once: what ``finish`` costs around the POST."""

    async def deliver(self, items: Any) -> DeliveryReport:
        return DeliveryReport(delivered=list(range(len(items))))

    def flush(self) -> None:
        pass


class Nowhere:
    async def write(self, records: Any) -> None:
        for record in records:
            if isinstance(record, LedgerRecord):
                record.encode()  # what the ledger writer does before handing bytes to the producer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args()
    values = [value for _, value in traffic(args.events, seed=1)]
    rules = MappingRules()
    results = [process_message(v, rules) for v in values]
    forwarded = [o for r in results for o in r.outcomes if isinstance(o, Forwarded)]
    events = sum(len(r.outcomes) for r in results)
    encoded = [o.encoded for o in forwarded]
    per = 1e6 / events
    stages: dict[str, float] = {}
    settle_heap()  # the collector as the worker sets it, and the inputs above out of its sight

    say("decode ...")
    stages["decode (bytes -> events)"] = cpu(lambda: all(decode_message(v, rules.max_message_bytes) for v in values))
    say("decode + select + identify + map + encode ...")
    whole = cpu(lambda: all(process_message(v, rules) for v in values))
    say("encode ...")
    stages["encode (event -> JSON, once)"] = cpu(lambda: all(orjson.dumps(o.event) for o in forwarded))
    stages["select + identify + map"] = (
        whole - stages["decode (bytes -> events)"] - stages["encode (event -> JSON, once)"]
    )

    say("runs: ledger slots, pending, warnings ...")
    processor = BatchProcessor(rules, Instant(), Nowhere(), Metrics(), ledger=Nowhere())
    messages = [SourceMessage(SourceRef("bench", i % 4, i, None), v) for i, v in enumerate(values)]
    runs = [messages[i : i + 18] for i in range(0, len(messages), 18)]  # ~1 MB runs, as the worker cuts them
    prepare = cpu(lambda: all(processor.prepare(run) for run in runs))
    stages["run bookkeeping (slots, insert_ids, pending)"] = prepare - whole

    prepared_runs = [processor.prepare(run) for run in runs]

    async def finish_all() -> None:
        for prepared in prepared_runs:
            await processor.finish(prepared)

    start = time.process_time()
    asyncio.run(finish_all())
    stages["outcomes, metrics, log line, ledger record"] = time.process_time() - start

    say("request assembly ...")
    builder = BodyBuilder("bench-key", None)
    sizes = [len(b) for b in encoded]

    def assemble() -> None:
        for chunk in chunk_indexes(sizes, range(len(encoded)), HTTP_V2, builder.overhead):
            builder.body([encoded[i] for i in chunk])

    stages["request assembly"] = cpu(assemble)

    say("HTTP client against the local service (another process) ...")
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "forwarder", "amplitude-local", "--port", str(port), "--no-keep-events"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                httpx.get(url + "/_local/stats", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        chunks = [[encoded[i] for i in c] for c in chunk_indexes(sizes, range(len(encoded)), HTTP_V2, builder.overhead)]

        async def post_all() -> float:
            client = AmplitudeClient(url + "/2/httpapi", SecretStr("bench-key"))
            await client.send(chunks[0])  # connect once, as a running worker already has
            begin = time.process_time()
            for chunk in chunks:
                await client.send(chunk)
            spent = time.process_time() - begin
            await client.aclose()
            return spent

        with_assembly = asyncio.run(post_all())
        stages["HTTP client (send, read and parse the answer)"] = with_assembly - stages["request assembly"]
    finally:
        stop_pid(service.pid, 10, service)

    table = {name: round(seconds * per, 2) for name, seconds in stages.items()}
    summary_file = OUT / "summary.json"
    if summary_file.exists():  # faust's own share, from the last `make bench` (an ack-only agent, same topic)
        summary = json.loads(summary_file.read_text())
        if summary.get("floor_cpu_s_per_million"):
            table["faust per record: fetch, stream, ack, commit (make bench)"] = summary["floor_cpu_s_per_million"]
        if summary.get("worker_cpu_s_per_million"):
            say(f"the whole worker, end to end (make bench): {summary['worker_cpu_s_per_million']} µs per event")
    width = max(len(name) for name in table)
    print(f"{'stage'.ljust(width)}  µs per event")
    for name, micros in table.items():
        print(f"{name.ljust(width)}  {micros:>8.2f}")
    print(f"{'sum of the stages'.ljust(width)}  {sum(table.values()):>8.2f}")
    print(json.dumps({"events": events, "forwarded": len(forwarded), "stages_us_per_event": table}))


if __name__ == "__main__":
    main()
