"""``forwarder report`` on the real broker: the ledger the worker and ``replay-dlq`` wrote, next to what the
local Amplitude service counted through its Dashboard API."""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from devkit.observe import wait_until_committed
from devkit.traffic import BASE_TIME, streams_requests
from forwarder.kafka.admin import create_topics
from forwarder.ledger.records import LedgerRecord
from tests.helpers import run_forwarder
from tests.kafka_helpers import produce
from tests.worker.test_worker_delivery import worker_env
from tests.worker.test_worker_faults import publish, sendable

pytestmark = pytest.mark.kafka


def test_report_with_amplitude_flags_exactly_the_rows_amplitude_lost_and_shows_re_sends(
    kafka, amplitude, topic_names, worker_factory
) -> None:
    service, url = amplitude
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 2, dlq: 1}))
    events = publish(kafka, source, 3000, 100, seed=21)
    rejected = set(random.Random(2).sample(sorted(sendable(events)), 12))
    service.faults.invalid_insert_ids = rejected  # dead-lettered by the worker, re-sent by replay-dlq below
    random.seed(4)  # the local service draws faults from the global generator
    service.faults.drop_silently_rate = 0.01  # Amplitude "loses" ~30 accepted events

    env = worker_env(kafka, url, source, dlq, group)
    worker = worker_factory(**env).start()
    asyncio.run(wait_until_committed(kafka, source, group, 180, worker.alive))
    assert worker.stop() == 0
    lost = Counter(
        (event_type, datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d"))
        for _, event_type, ms in service.recorder.silently_dropped
    )
    assert lost

    service.faults.invalid_insert_ids = set()
    service.faults.drop_silently_rate = 0.0
    resend = run_forwarder(env, "replay-dlq")
    assert resend.returncode == 0, resend.stderr[-2000:]

    env = {**env, "AMPLITUDE_SECRET_KEY": "any-secret"}
    result = run_forwarder(env, "report", "--by", "code", "--format", "json", "--amplitude")
    assert result.returncode == 3, result.stderr  # rows differ: the exit status says so
    body = orjson.loads(result.stdout)
    assert body["total"]["read"] == 3000
    assert body["total"]["dead_lettered"] == len(rejected)
    assert body["total"]["resent"] == len(rejected)
    assert body["balance"]["holds"] is True
    flagged = {
        (r["event_type"], r["day"]): r["verdict"] for r in body["amplitude"] if not r["verdict"].startswith("ok")
    }
    assert flagged == {key: f"MISSING {n}" for key, n in lost.items()}
    explained = [r for r in body["amplitude"] if r["verdict"] == "ok (re-sent)"]
    assert sum(r["resent"] for r in explained) >= 1

    table = run_forwarder(env, "report", "--amplitude", "--chart", str(worker.log_path.parent / "report.png"))
    assert table.returncode == 3
    assert f"{len(lost)} of " in table.stdout
    assert "rows differ from what was delivered" in table.stdout
    assert (worker.log_path.parent / "report.png").stat().st_size > 10_000


def test_bad_report_arguments_and_settings_are_one_line(kafka, topic_names) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka, "FORWARDER_LEDGER_TOPIC": topic_names("no-ledger")}
    bad_time = run_forwarder(env, "report", "--from", "last tuesday")
    assert bad_time.returncode == 2
    assert bad_time.stderr.strip().count("\n") == 0
    missing = run_forwarder(env, "report")
    assert missing.returncode == 1
    assert "does not exist: run `forwarder topics` to create it" in missing.stderr
    asyncio.run(create_topics(kafka, {env["FORWARDER_LEDGER_TOPIC"]: 1}))
    asyncio.run(produce(kafka, env["FORWARDER_LEDGER_TOPIC"], [b"not a ledger record"]))
    garbage = run_forwarder(env, "report")
    assert garbage.returncode == 0  # nothing counted, so nothing out of balance; the skip is said
    assert "1 ledger records could not be read and are not counted" in garbage.stdout
    no_secret = run_forwarder({**env, "AMPLITUDE_API_KEY": "k"}, "report", "--amplitude")
    assert no_secret.returncode == 2
    assert no_secret.stderr.strip().splitlines()[-1].strip() == "AMPLITUDE_SECRET_KEY: is required by --amplitude"
    for result in (bad_time, missing, garbage, no_secret):
        assert "Traceback" not in result.stderr


def test_report_names_offsets_never_processed_and_exits_3(kafka, topic_names) -> None:
    """A ledger with a hole made on purpose: the group committed 31, the records cover 0-9 and 15-30."""
    source, ledger, group = topic_names("src"), topic_names("ledger"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, ledger: 1}))
    hour = 490_000
    records = []
    for first, last in ((0, 9), (15, 30)):
        record = LedgerRecord("stream", source, 0, first, last)
        for _ in range(first, last + 1):
            record.settle(("delivered", "", "SMS_SENT", hour, "campaign-1", "default"))
        records.append(record)
    asyncio.run(produce(kafka, ledger, [r.encode() for r in records], [r.key for r in records]))
    asyncio.run(commit(kafka, group, TopicPartition(source, 0), 31))
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "FORWARDER_SOURCE_TOPIC": source,
        "FORWARDER_LEDGER_TOPIC": ledger,
        "FORWARDER_GROUP_ID": group,
    }
    table = run_forwarder(env, "report")
    assert table.returncode == 3, table.stderr
    assert f"offsets never processed: {source}/0 10-14" in table.stdout
    assert "read 26 = delivered 26" in table.stdout  # the counts themselves add up: only the hole fails it
    body = orjson.loads(run_forwarder(env, "report", "--format", "json").stdout)
    assert body["holes"] == [{"topic": source, "partition": 0, "first": 10, "last": 14}]
    assert body["balance"]["holds"] is True

    filled = LedgerRecord("stream", source, 0, 10, 14)
    asyncio.run(produce(kafka, ledger, [filled.encode()], [filled.key]))
    assert run_forwarder(env, "report").returncode == 0


async def commit(servers: str, group: str, tp: TopicPartition, offset: int) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.commit({tp: offset})
    finally:
        await consumer.stop()


def test_report_in_the_projects_time_zone_matches_amplitude_on_every_row(
    kafka, amplitude, topic_names, worker_factory
) -> None:
    from zoneinfo import ZoneInfo

    service, url = amplitude
    service.zone = ZoneInfo("America/Los_Angeles")  # a project whose days begin at 08:00Z (07:00Z in summer)
    source, dlq, group = topic_names("src"), topic_names("dlq"), topic_names("grp")
    asyncio.run(create_topics(kafka, {source: 1, dlq: 1}))
    bodies = list(streams_requests(1500, per_request=100, seed=23))
    for n, event in enumerate(e for body in bodies for e in body["events"]):
        event["event_time"] = BASE_TIME + n * 173  # three days, across both zones' midnights
    asyncio.run(produce(kafka, source, [orjson.dumps(b) for b in bodies]))
    env = worker_env(kafka, url, source, dlq, group)
    worker = worker_factory(**env).start()
    asyncio.run(wait_until_committed(kafka, source, group, 180, worker.alive))
    assert worker.stop() == 0

    env = {**env, "AMPLITUDE_SECRET_KEY": "any-secret"}
    args = ("report", "--by", "day", "--format", "json", "--amplitude")
    in_its_zone = run_forwarder(env, *args, "--timezone", "America/Los_Angeles")
    assert in_its_zone.returncode == 0, in_its_zone.stdout[-3000:] + in_its_zone.stderr[-2000:]
    body = orjson.loads(in_its_zone.stdout)
    assert body["timezone"] == "America/Los_Angeles"
    assert body["amplitude"]
    assert {row["verdict"] for row in body["amplitude"]} == {"ok"}
    # The same from the setting; and in UTC, the days Amplitude counts in Los Angeles do not line up.
    from_setting = run_forwarder({**env, "AMPLITUDE_PROJECT_TIMEZONE": "America/Los_Angeles"}, *args)
    assert from_setting.returncode == 0
    in_utc = run_forwarder(env, *args)
    assert in_utc.returncode == 3
    assert any(row["verdict"].startswith(("MISSING", "EXTRA")) for row in orjson.loads(in_utc.stdout)["amplitude"])
