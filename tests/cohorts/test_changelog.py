"""The cohort table's write-through store: changes land in the store at once and in the changelog, in faust's
format, in the record's partition, before the record is acknowledged; and the faust code it mirrors is pinned."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from forwarder.cohorts.changelog import ChangelogStore
from forwarder.cohorts.state import encode_value, member_key, meta_key
from forwarder.kafka.admin import create_topics
from tests.kafka.test_fastpath import FAUST_VERSION
from tests.kafka_helpers import read_all

# The faust code whose behaviour forwarder/cohorts/changelog.py reproduces (how a table writes its changelog) or
# relies on (how the memory store recovers from it).
FAUST_SOURCES = {
    "faust.stores.memory:Store.apply_changelog_batch": "71863e3cd727aac2",
    "faust.stores.memory:Store._create_batch_iterator": "b082c8bcc0403823",
    "faust.tables.table:Table.on_key_set": "a370e35ca55c2c7e",
    "faust.tables.table:Table.on_key_del": "4f2900b2f9d24a08",
    "faust.tables.base:Collection.send_changelog": "3dd3884e1b5fc0e1",
}


def test_the_faust_code_the_store_mirrors_is_the_code_it_was_written_against() -> None:
    """Fails when faust moves: re-check forwarder/cohorts/changelog.py against the new faust, then update this."""
    import hashlib
    import importlib
    import importlib.metadata
    import inspect

    assert importlib.metadata.version("faust-streaming") == FAUST_VERSION
    changed = []
    for name, digest in FAUST_SOURCES.items():
        module, path = name.split(":")
        owner, method = path.split(".")
        source = inspect.getsource(getattr(getattr(importlib.import_module(module), owner), method))
        if hashlib.sha256(source.encode()).hexdigest()[:16] != digest:
            changed.append(name)
    assert not changed, f"faust's {changed} changed: re-check forwarder/cohorts/changelog.py"


def test_dropping_moved_partitions_keeps_only_the_cohorts_of_the_others() -> None:
    data: dict[bytes, bytes] = {}
    store = ChangelogStore(data, None, "changelog")
    partitioner = DefaultPartitioner()
    cohorts = [f"cohort-{i}" for i in range(20)]
    for cohort in cohorts:
        store[member_key(cohort, ("uid", "a"))] = encode_value(True, 1)
        store[meta_key(cohort)] = b"{}"
    dropped = store.forget_partitions({0, 1}, 4)
    kept = {k.decode().split("\x1f")[0].split("\x1e")[0] for k in data}
    assert kept == {c for c in cohorts if partitioner(c.encode(), [0, 1, 2, 3], [0, 1, 2, 3]) in (2, 3)}
    assert dropped == 2 * (len(cohorts) - len(kept))


@pytest.mark.kafka
def test_changes_reach_the_changelog_in_fausts_format_and_the_records_partition(kafka: str, topic_names) -> None:
    topic = topic_names("changelog")
    asyncio.run(create_topics(kafka, {topic: 3}))

    async def write() -> dict[bytes, bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
        await producer.start()
        data: dict[bytes, bytes] = {}
        store = ChangelogStore(data, producer, topic)
        store.partition = 2
        store[b"c1\x1fuid\x1fa"] = b"1:100"
        store[b"c1\x1fuid\x1fb"] = b"1:100"
        del store[b"c1\x1fuid\x1fb"]
        assert store.unflushed == 3
        await store.flush()
        assert store.unflushed == 0
        await producer.stop()
        return data

    data = asyncio.run(write())
    assert data == {b"c1\x1fuid\x1fa": b"1:100"}
    records = asyncio.run(read_all(kafka, topic, expected=3))
    assert [(r.partition, r.key, r.value) for r in records] == [
        (2, b"c1\x1fuid\x1fa", b"1:100"),
        (2, b"c1\x1fuid\x1fb", b"1:100"),
        (2, b"c1\x1fuid\x1fb", None),  # a tombstone, as faust's own delete writes
    ]
