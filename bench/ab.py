"""A/B of worker settings (or code) on one topic: ``python -m bench.ab [--latency-ms 150] LABEL=SETTINGS ...``.

Each LABEL=SETTINGS is a worker configuration, SETTINGS being ``NAME:VALUE`` pairs separated by commas (worker
environment variables, e.g. ``lanes1=FORWARDER_MAX_IN_FLIGHT:1``; ``PYTHONPATH:/path/to/a/checkout`` runs another
version of the code). The configurations run in turn, twice over, on the same 200,000-event topic against the
local Amplitude service; each line says events/s, CPU seconds per million events and peak RSS. The machine is
shared: compare configurations of one invocation, not across invocations.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from bench.run import PARTITIONS, AmplitudeProcess, produce, run_workers, say, sendable, traffic
from devkit.kafka import broker_for
from forwarder.kafka.admin import create_topics


def parse(spec: str) -> tuple[str, dict[str, str]]:
    label, _, pairs = spec.partition("=")
    settings = {}
    for pair in filter(None, pairs.split(",")):
        name, sep, value = pair.partition(":")
        if not sep:
            raise SystemExit(f"bench.ab: {pair!r} is not NAME:VALUE")
        settings[name] = value
    return label, settings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", nargs="+", metavar="LABEL=NAME:VALUE,...")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="the local Amplitude service's answer delay")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--apps", type=int, default=1, help="Streams bodies of this many apps in turn (Demo App 0, 1, ...): routes"
    )
    args = parser.parse_args()
    configs = [parse(spec) for spec in args.configs]
    with broker_for("bench") as servers:
        topic = f"ab-{int(time.time())}"
        asyncio.run(create_topics(servers, {topic: PARTITIONS, topic + "-dlq": 1, topic + "-retry": 1}))
        apps = tuple(f"Demo App {n}" for n in range(args.apps)) if args.apps > 1 else ("Demo App",)
        records = list(traffic(args.events, seed=1, apps=apps))
        expected = sum(len(sendable(value)) for _, value in records)
        asyncio.run(produce(servers, topic, iter(records), args.events, "filling the topic"))
        amplitude = AmplitudeProcess()
        try:
            amplitude.answer_after(args.latency_ms)
            for round_number in range(args.rounds):
                for label, settings in configs:
                    saved = dict(os.environ)
                    os.environ.update(settings)  # the workers inherit the environment
                    try:
                        group = f"{topic}-{label}-{round_number}"
                        measured = run_workers(1, servers, topic, group, amplitude, expected)
                    except RuntimeError as exc:  # a worker that died or fell short: said, and the others still run
                        print(f"{label:>14}: FAILED: {exc}", flush=True)
                        continue
                    finally:
                        os.environ.clear()
                        os.environ.update(saved)
                    print(
                        f"{label:>14}: {measured.eps:>9,.0f} events/s {measured.cpu_s_per_million:6.1f} CPU s per "
                        f"million events ({measured.steady_cpu_s_per_million:.1f} past start-up, which took "
                        f"{measured.startup_cpu_s:.2f} s), peak RSS {measured.peak_rss_mb:.0f} MB",
                        flush=True,
                    )
        finally:
            amplitude.stop()
    say(f"{args.events:,} events, answer delay {args.latency_ms:.0f} ms, {args.rounds} rounds")


if __name__ == "__main__":
    main()
