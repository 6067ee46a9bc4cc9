"""The fetcher's inline hand-off: a callback that suspends after its first step must finish exactly as if awaited."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from forwarder.worker.fastpath import _resume


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


# What forwarder/worker/fastpath.py copies or overrides in faust, and the source it was written against.
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


def test_the_faust_code_the_fork_copies_is_the_code_it_was_copied_from() -> None:
    """Fails when faust moves: re-check forwarder/worker/fastpath.py against the new faust, then update this."""
    import hashlib
    import importlib.metadata
    import inspect

    from faust.transport import consumer

    installed = importlib.metadata.version("faust-streaming")
    assert installed == FAUST_VERSION, (
        f"faust-streaming {installed} is installed; forwarder/worker/fastpath.py was written against "
        f"{FAUST_VERSION}: re-check it (and the loss watch's hooks) before moving the pin"
    )
    changed = []
    for name, digest in FAUST_SOURCES.items():
        owner, method = name.split(".")
        source = inspect.getsource(getattr(getattr(consumer, owner), method))
        if hashlib.sha256(source.encode()).hexdigest()[:16] != digest:
            changed.append(name)
    assert not changed, f"faust's {changed} changed: re-check forwarder/worker/fastpath.py"
