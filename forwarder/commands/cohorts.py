"""``forwarder cohorts pull | status``: the command-line side of the cohort sync (the worker is its own module)."""

from __future__ import annotations

import asyncio
import sys
import time
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer
from tqdm import tqdm

from forwarder.cohorts.pull import CohortExports, CohortInfo, ExportError, PullResult, pull_one
from forwarder.cohorts.status import read_statuses, render_json, render_table
from forwarder.kafka.security import client_options
from forwarder.settings import CohortPullSettings, Settings

SCHEDULES = {"hourly": timedelta(hours=1), "daily": timedelta(days=1)}


async def topic_partitions(settings: Settings, topic: str) -> int:
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
        raise ExportError(f"Amplitude has no cohort {', '.join(unknown)} (see: forwarder cohorts pull --list)")
    return [by_id[w] for w in wanted]


async def pull(settings: CohortPullSettings, wanted: list[str], everything: bool, if_changed: bool) -> list[PullResult]:
    amplitude = settings.amplitude
    exports = CohortExports(amplitude.dashboard_base_url, amplitude.api_key, amplitude.secret_key)
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
        exports = CohortExports(
            settings.amplitude.dashboard_base_url, settings.amplitude.api_key, settings.amplitude.secret_key
        )
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


def run_status(settings: Settings, output: str) -> int:
    statuses, _ = asyncio.run(read_statuses(client_options(settings), settings.cohorts.status_topic))
    print(render_json(statuses) if output == "json" else render_table(statuses))
    return 0
