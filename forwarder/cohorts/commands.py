"""``forwarder cohorts worker | pull | status``: the cohort half's commands (``cohorts demo`` is the devkit's)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from forwarder import logs
from forwarder.amplitude.dashboard import DashboardAPI, DashboardError
from forwarder.cohorts.pull import CohortExports, CohortInfo, PullResult, pull_one
from forwarder.cohorts.status import read_statuses, render_json, render_table
from forwarder.command import (
    Command,
    CommandError,
    no_arguments,
    require_kafka,
    usage_error,
)
from forwarder.kafka.admin import broker_count
from forwarder.kafka.security import client_options
from forwarder.settings import CohortPullSettings, CohortStatusSettings, CohortWorkerSettings, HasKafka, load_settings

SCHEDULES = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}


async def topic_partitions(settings: HasKafka, topic: str) -> int:
    """How many partitions ``topic`` has; raises ``LookupError`` when it does not exist."""
    producer = AIOKafkaProducer(**client_options(settings))
    await producer.start()
    try:
        partitions = await asyncio.wait_for(producer.partitions_for(topic), timeout=15)
    except Exception:
        raise LookupError(f"the topic {topic} does not exist (run: forwarder topics)") from None
    finally:
        await producer.stop()
    return len(partitions)


def _choose(available: list[CohortInfo], wanted: list[str], everything: bool) -> list[CohortInfo]:
    by_id = {c.cohort_id: c for c in available}
    if everything:
        return [c for c in available if not c.archived]
    unknown = [w for w in wanted if w not in by_id]
    if unknown:
        raise DashboardError(f"Amplitude has no cohort {', '.join(unknown)} (see: forwarder cohorts pull --list)")
    return [by_id[w] for w in wanted]


async def pull(settings: CohortPullSettings, wanted: list[str], everything: bool, if_changed: bool) -> list[PullResult]:
    amplitude = settings.amplitude
    exports = CohortExports(DashboardAPI(amplitude.dashboard_base_url, amplitude.api_key, amplitude.secret_key))
    producer = AIOKafkaProducer(
        **client_options(settings), acks="all", enable_idempotence=True, max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    results: list[PullResult] = []
    try:
        chosen = _choose(await exports.cohorts(), wanted, everything)
        pulled: dict[str, object] = {}
        if if_changed:
            _, pulled = await read_statuses(client_options(settings), settings.cohorts.status_topic)
        for cohort in chosen:
            last = pulled.get(cohort.cohort_id)
            if isinstance(last, dict) and last.get("last_computed") == cohort.last_computed and cohort.last_computed:
                results.append(PullResult(cohort.cohort_id, cohort.name, 0, 0, 0, skipped=True))
                continue
            with tqdm(total=cohort.size, desc=f"cohort {cohort.cohort_id}", unit="member", file=sys.stderr) as bar:
                results.append(
                    await pull_one(
                        exports,
                        producer,
                        cohort,
                        topic=settings.cohorts.topic,
                        status_topic=settings.cohorts.status_topic,
                        anonymous_property=settings.cohorts.anonymous_property,
                        anonymous_field=settings.moengage.anonymous_field,
                        chunk_members=settings.cohorts.snapshot_chunk_members,
                        progress=bar.update,
                    )
                )
    finally:
        await exports.aclose()
        await producer.stop()
    return results


def _describe(result: PullResult) -> str:
    if result.skipped:
        return f"cohort {result.cohort_id} ({result.name}): unchanged since the last pull; skipped"
    return (
        f"cohort {result.cohort_id} ({result.name}): {result.members} members written as a snapshot in "
        f"{result.parts} parts ({result.unmapped} unmapped: neither a user id nor an anonymous id)"
    )


def next_run(now: datetime, schedule: str) -> datetime:
    """The next whole hour or the next midnight (UTC)."""
    if schedule == "hourly":
        return now.replace(minute=0, second=0, microsecond=0) + SCHEDULES[schedule]
    return now.replace(hour=0, minute=0, second=0, microsecond=0) + SCHEDULES[schedule]


def run_pull(
    settings: CohortPullSettings, wanted: list[str], everything: bool, if_changed: bool, schedule: str | None
) -> int:
    while True:
        results = asyncio.run(pull(settings, wanted, everything, if_changed))
        for result in results:
            print(_describe(result))
        if schedule is None:
            return 0
        wake = next_run(datetime.now(UTC), schedule)
        print(f"next pull at {wake:%Y-%m-%d %H:%M}Z", file=sys.stderr, flush=True)
        time.sleep(max(0.0, (wake - datetime.now(UTC)).total_seconds()))


def run_list(settings: CohortPullSettings) -> int:
    async def listing() -> list[CohortInfo]:
        amplitude = settings.amplitude
        exports = CohortExports(DashboardAPI(amplitude.dashboard_base_url, amplitude.api_key, amplitude.secret_key))
        try:
            return await exports.cohorts()
        finally:
            await exports.aclose()

    for cohort in asyncio.run(listing()):
        computed = (
            f"computed {datetime.fromtimestamp(cohort.last_computed / 1000, UTC):%Y-%m-%d %H:%M}Z"
            if cohort.last_computed
            else "never computed"
        )
        size = "-" if cohort.size is None else str(cohort.size)
        print(f"{cohort.cohort_id}\t{cohort.name}\t{size} members\t{computed}")
    return 0


def run_status(settings: CohortStatusSettings, output: str) -> int:
    statuses, _ = asyncio.run(read_statuses(client_options(settings), settings.cohorts.status_topic))
    print(render_json(statuses) if output == "json" else render_table(statuses))
    return 0


def _run_worker(args: argparse.Namespace) -> int:
    settings = load_settings(CohortWorkerSettings)
    logs.setup(settings.cohorts.log_level)
    require_kafka(settings)
    try:
        partitions = asyncio.run(topic_partitions(settings, settings.cohorts.topic))
    except LookupError as exc:
        raise CommandError(str(exc)) from None
    # faust creates the members table's changelog with this replication: too many is a traceback from deep inside.
    replication, brokers = settings.cohorts.topic_replication, asyncio.run(broker_count(client_options(settings)))
    if replication > brokers:
        raise usage_error(
            f"COHORTS_TOPIC_REPLICATION={replication} but the cluster has {brokers} broker(s); set "
            f"COHORTS_TOPIC_REPLICATION to at most {brokers} (1 for the local broker) and run again"
        )
    from forwarder.cohorts.worker import run_cohorts_worker  # faust: once the settings and Kafka are known good

    run_cohorts_worker(settings, partitions)
    return 0


def _pull_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cohort", action="append", metavar="ID", help="a cohort id (repeatable)")
    parser.add_argument("--all", action="store_true", help="every cohort that is not archived")
    parser.add_argument(
        "--if-changed", action="store_true", help="skip cohorts whose lastComputed did not move since the last pull"
    )
    parser.add_argument("--schedule", choices=["hourly", "daily"], help="repeat at every whole hour or every midnight")
    parser.add_argument("--list", action="store_true", help="list Amplitude's cohorts and exit")


def _run_pull(args: argparse.Namespace) -> int:
    settings = load_settings(CohortPullSettings)
    logs.setup("WARNING")
    try:
        if args.list:
            return run_list(settings)
        if not args.cohort and not args.all:
            raise usage_error("name --cohort ID (repeatable), or --all")
        require_kafka(settings)
        return run_pull(settings, args.cohort or [], args.all, args.if_changed, args.schedule)
    except (DashboardError, LookupError) as exc:
        raise CommandError(str(exc)) from None


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=["table", "json"], default="table")


def _run_status(args: argparse.Namespace) -> int:
    settings = load_settings(CohortStatusSettings)
    logs.setup("WARNING")
    require_kafka(settings)
    try:
        return run_status(settings, args.format)
    except LookupError as exc:
        raise CommandError(str(exc)) from None


WORKER = Command(no_arguments, _run_worker)
PULL = Command(_pull_arguments, _run_pull)
STATUS = Command(_status_arguments, _run_status)
