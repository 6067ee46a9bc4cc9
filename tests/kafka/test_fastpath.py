"""The fetcher's inline hand-off: a callback that suspends after its first step must finish exactly as if awaited."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from forwarder.kafka.fastpath import FastDrainConsumer, GuardedApp, _resume


def first_step(coroutine: Any) -> Any:
    """What the fetcher does: one step inline; returns what the coroutine suspended on."""
    try:
        return coroutine.send(None)
    except StopIteration:
        pytest.fail("the coroutine finished in its first step; the test needs one that suspends")


async def cancel_midway(coroutine: Any) -> None:
    """Step it inline, resume the rest as the fetcher would, then cancel that while it waits."""
    task = asyncio.ensure_future(_resume(coroutine, first_step(coroutine)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_callback_waiting_on_a_future_sees_its_result_and_returns_its_value() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    seen: list[int] = []

    async def callback() -> str:
        seen.append(await future)
        await asyncio.sleep(0)  # a bare yield after the first suspension
        seen.append(await asyncio.sleep(0.01, result=2))
        return "done"

    coroutine = callback()
    task = asyncio.ensure_future(_resume(coroutine, first_step(coroutine)))
    await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for the future
    future.set_result(1)
    assert await task == "done"
    assert seen == [1, 2]


async def test_a_failed_future_raises_inside_the_callback_where_it_can_be_handled() -> None:
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def callback() -> str:
        try:
            await future
        except KeyError as exc:
            return f"handled {exc}"
        return "not reached"

    coroutine = callback()
    task = asyncio.ensure_future(_resume(coroutine, first_step(coroutine)))
    future.set_exception(KeyError("x"))
    assert await task == "handled 'x'"


async def test_cancelling_the_rest_runs_the_callbacks_cleanup() -> None:
    cleaned: list[str] = []

    async def callback() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append("cleanup")

    await cancel_midway(callback())
    assert cleaned == ["cleanup"]


async def test_the_callback_sees_the_cancellation_as_cancelled_error() -> None:
    seen: list[str] = []

    async def callback() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    await cancel_midway(callback())
    assert seen == ["cancelled"]


# What forwarder/kafka/fastpath.py copies or overrides in faust, and the source it was written against.
# The perform_seek and getmany entries are there because the loss watch relies on them: perform_seek seeks through
# seek_to_committed on every assignment, and getmany draws every record through _getmany.
FAUST_VERSION = "0.15.3"
FAUST_SOURCES = {
    "Consumer._drain_messages": "44a2500309e83c63",
    "Consumer.perform_seek": "0e8c130ff4b0afd8",
    "Consumer.getmany": "4b168d84882a70d6",
    "ThreadDelegateConsumer._getmany": "f9d47aa9010b5ff2",
    "ThreadDelegateConsumer.seek_to_committed": "f1d483b861b0328b",
    "Consumer._wait_next_records": "6218e1969a636b3f",
    "Consumer.on_buffer_drop": "4b57e8a418d5ad9c",
    # The ordered commit (forwarder.kafka.order): _new_offset is replaced (its arithmetic skips records); ack,
    # _should_commit and _commit_offsets decide what reaches the acked list and the broker; on_partitions_revoked,
    # commit and maybe_wait_for_commit_to_finish carry the commit before a release; seek reads records again.
    "Consumer._new_offset": "1d2c7ea89a7ad4f1",
    "Consumer.ack": "5fcf41cf45153475",
    "Consumer._should_commit": "5ce941793947ad42",
    "Consumer._commit_offsets": "1a69799041188441",
    "Consumer.on_partitions_revoked": "d04b7ae72c6fc206",
    "Consumer.commit": "a354437baaa08bf8",
    "Consumer.maybe_wait_for_commit_to_finish": "d687f63a0b5ef0c5",
    "Consumer.seek": "b86a9fe05f956b30",
    "ThreadDelegateConsumer.position": "a7f22b78f21d085a",
    "ThreadDelegateConsumer.earliest_offsets": "2833b09d2888825b",
}
# Outside faust.transport.consumer.Consumer: the stream iterator that acknowledges the messages it skips, the path
# of an acknowledgement to Consumer.ack, which the fork refuses unless an agent acknowledges (FastDrainConsumer.ack).
FAUST_OTHER_SOURCES = {
    "faust.streams.Stream._py_aiter": "3a48ee257a65435b",
    "faust.types.tuples.Message.ack": "4751b72c4ed84153",
    "faust.types.tuples.ConsumerMessage.on_final_ack": "45d670b6a8ac4bd0",
    # The seek the fork sends to the consumer thread (FastDrainConsumer._seek) instead of faust's, which changes the
    # fetcher's records from the app's thread.
    "faust.transport.consumer.ThreadDelegateConsumer._seek": "4f95c631420410a5",
    "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread.seek": "1498560d05f02582",
    "aiokafka.consumer.fetcher.Fetcher.seek_to": "f0ba6aba6c22ef83",
}


def test_the_faust_code_the_fork_copies_is_the_code_it_was_copied_from() -> None:
    """Fails when faust moves: re-check forwarder/kafka/fastpath.py against the new faust, then update this."""
    import hashlib
    import importlib
    import importlib.metadata
    import inspect

    from faust.transport import consumer

    installed = importlib.metadata.version("faust-streaming")
    assert installed == FAUST_VERSION, (
        f"faust-streaming {installed} is installed; forwarder/kafka/fastpath.py was written against "
        f"{FAUST_VERSION}: re-check it (and the loss watch's hooks) before moving the pin"
    )
    changed = []
    for name, digest in FAUST_SOURCES.items():
        owner, method = name.split(".")
        source = inspect.getsource(getattr(getattr(consumer, owner), method))
        if hashlib.sha256(source.encode()).hexdigest()[:16] != digest:
            changed.append(name)
    for path, digest in FAUST_OTHER_SOURCES.items():
        module, owner, method = path.rsplit(".", 2)
        source = inspect.getsource(getattr(getattr(importlib.import_module(module), owner), method))
        if hashlib.sha256(source.encode()).hexdigest()[:16] != digest:
            changed.append(path)
    assert not changed, f"faust's {changed} changed: re-check forwarder/kafka/fastpath.py"


async def test_only_an_agents_acknowledgement_reaches_the_commit() -> None:
    """faust's stream iterator acknowledges a message it skips (one of a previous generation, or one taken while
    flow is suspended for a rebalance) through the message's own ack: that offset was never processed and must not
    be committed. The agent's acknowledgement (``GuardedApp.acknowledge``) counts."""
    app = GuardedApp("fastpath-acks", broker="kafka://127.0.0.1:1", value_serializer="raw")
    consumer = cast(FastDrainConsumer, app.consumer)  # never started: no broker is asked anything
    consumer._thread.thread_loop.close()  # the consumer thread's loop, created with it and never run
    app.topics.acking_topics.add("src")  # what subscribing an agent to the topic does
    tp = TP("src", 0)
    consumer._committed_offset[tp] = 5
    skipped = ConsumerMessage("src", 0, 5, 0.0, 0, [], b"k", b"v", None)
    skipped.refcount = 1
    assert skipped.ack(consumer) is False  # the stream's skip path: Message.ack -> on_final_ack -> Consumer.ack
    assert not consumer._acked.get(tp)
    assert consumer._new_offset(tp) is None

    class Event:
        def __init__(self, message: Any) -> None:
            self.message = message

        def ack(self) -> bool:
            return bool(self.message.ack(consumer))

    processed = ConsumerMessage("src", 0, 6, 0.0, 0, [], b"k", b"v", None)
    processed.refcount = 1
    app.acknowledge([Event(skipped), Event(processed)])  # the agent read 5 again and processed it, then 6
    assert consumer._new_offset(tp) == 7
