"""The work queue: deduplicated keys, one at a time per key, delays, per-key backoff."""

from __future__ import annotations

import asyncio

import pytest

from toolcatalog.engine.queue import Backoff, ShutDown, WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def take(queue: WorkQueue, timeout: float = 0.5) -> str:
    return await asyncio.wait_for(queue.get(), timeout)


async def nothing_ready(queue: WorkQueue) -> bool:
    try:
        await asyncio.wait_for(queue.get(), 0.05)
    except TimeoutError:
        return True
    return False


async def test_a_key_added_many_times_is_handed_out_once():
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert [await take(queue), await take(queue)] == ["a", "b"]
    assert await nothing_ready(queue)


async def test_a_key_added_while_processing_comes_back_after_done_never_twice_at_once():
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await take(queue) == "a"
    queue.add("a")                      # a refresh arrives while the sync runs
    queue.add("a")
    assert await nothing_ready(queue)   # not handed out while it is processing
    queue.done("a")
    assert await take(queue) == "a"     # once more, right after
    queue.done("a")
    assert await nothing_ready(queue)


async def test_add_after_keeps_the_earliest_due_time():
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock=clock)
    queue.add_after("a", 60)
    queue.add_after("a", 10)
    queue.add_after("a", 30)
    assert queue.is_due_later("a") == pytest.approx(10)
    assert await nothing_ready(queue)
    clock.now += 10
    assert await take(queue) == "a"


@pytest.mark.looptime
async def test_a_waiting_worker_wakes_when_a_delay_passes(looptime):
    queue: WorkQueue[str] = WorkQueue(clock=asyncio.get_running_loop().time)
    queue.add_after("soon", 5)
    assert await take(queue, timeout=60) == "soon"
    assert float(looptime) == pytest.approx(5)      # woken when it was due, not before and not by a poll


def test_backoff_grows_per_key_with_jitter_and_forget_resets_it():
    backoff: Backoff[str] = Backoff(base=1.0, cap=8.0, jitter=lambda: 1.0)
    assert [backoff.when("a") for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert backoff.when("b") == 1.0
    backoff.forget("a")
    assert backoff.when("a") == 1.0
    low: Backoff[str] = Backoff(base=1.0, cap=8.0, jitter=lambda: 0.0)
    assert low.when("a") == 0.5         # jitter spreads over [half, all]


async def test_discard_drops_pending_work_and_shutdown_stops_workers():
    queue: WorkQueue[str] = WorkQueue()
    queue.add("gone")
    queue.add_after("later", 0.01)
    queue.discard("gone")
    queue.discard("later")
    assert await nothing_ready(queue)
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.shut_down()
    with pytest.raises(ShutDown):
        await asyncio.wait_for(waiting, 1.0)


def test_retry_after_holds_a_key_back_at_least_that_long_but_no_longer_than_the_cap():
    clock = Clock()
    queue: WorkQueue[str] = WorkQueue(clock=clock, backoff=Backoff(base=0.5, cap=60.0, jitter=lambda: 1.0),
                                      retry_after_cap=300.0)
    assert queue.add_rate_limited("a", retry_after=7.0) == 7.0         # the backoff alone says 0.5 s
    assert queue.is_due_later("a") == pytest.approx(7.0)
    assert queue.add_rate_limited("b", retry_after=None) == 0.5
    assert queue.add_rate_limited("c", retry_after=3600.0) == 300.0    # capped
    for _ in range(8):
        queue.add_rate_limited("d")
    assert queue.add_rate_limited("d", retry_after=1.0) == 60.0        # a longer backoff is kept


class Recorder:
    def __init__(self) -> None:
        self.adds = self.retries = 0
        self.waited: list[float] = []
        self.worked: list[float] = []

    def added(self) -> None:
        self.adds += 1

    def taken(self, waited: float) -> None:
        self.waited.append(waited)

    def finished(self, worked: float) -> None:
        self.worked.append(worked)

    def retried(self) -> None:
        self.retries += 1


async def test_the_observer_hears_adds_time_waiting_time_working_and_retries_as_client_go_counts_them():
    clock, seen = Clock(), Recorder()
    queue: WorkQueue[str] = WorkQueue(clock=clock, observer=seen)
    queue.add("a")
    queue.add("a")                          # deduplicated: one add
    queue.add_after("b", 5)                 # not added until it is due
    assert (seen.adds, len(queue)) == (1, 1)
    clock.now += 2
    assert await take(queue) == "a" and seen.waited == [2.0]
    clock.now += 3                          # "b" is due now; "a" has worked 3 s
    assert queue.unfinished() == (3.0, 3.0)
    assert await take(queue) == "b" and seen.adds == 2 and seen.waited == [2.0, 0.0]
    clock.now += 1
    assert queue.unfinished() == (5.0, 4.0)     # a: 4 s, b: 1 s
    queue.done("a")
    assert seen.worked == [4.0] and queue.unfinished() == (1.0, 1.0)
    queue.add_rate_limited("b")
    queue.done("b")
    assert seen.retries == 1 and queue.unfinished() == (0.0, 0.0)


async def test_an_urgent_key_goes_before_the_backlog_even_when_it_was_waiting_or_processing():
    queue: WorkQueue[str] = WorkQueue()
    for key in ("a", "b", "c"):
        queue.add(key)
    queue.add("d", urgent=True)         # a withdrawal: before the three waiting
    queue.add("c", urgent=True)         # waiting already: moved to the front
    assert [await take(queue), await take(queue)] == ["c", "d"]
    assert await take(queue) == "a"
    queue.add("e")
    queue.add("a", urgent=True)         # processing: comes back first once done
    queue.done("a")
    assert [await take(queue), await take(queue), await take(queue)] == ["a", "b", "e"]
    assert await nothing_ready(queue)
