"""The liveness bookkeeping: changes the API server holds that the object cache has not caught up with."""

from __future__ import annotations

from toolcatalog.engine.objects import ObjectCache
from toolcatalog.engine.watchlag import Change, WatchLag

TS = "ToolServer"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def body(name: str, version: str, uid: str = "u1") -> dict:
    return {"metadata": {"namespace": "ns", "name": name, "uid": uid, "resourceVersion": version}, "spec": {}}


def setup() -> tuple[ObjectCache, Clock, WatchLag]:
    objects, clock = ObjectCache(), Clock()
    return objects, clock, WatchLag(objects, stall_after=10, clock=clock)


def test_a_change_the_watch_delivers_in_time_is_never_stalled():
    objects, clock, lag = setup()
    objects.observe(TS, body("a", "5"))
    lag.reported([Change((TS, "ns", "a"), "7")])
    clock.now += 9
    assert (lag.verdict().behind, lag.verdict().stalled) == (1, [])
    objects.observe(TS, body("a", "7"))             # the watch event came
    assert lag.verdict().behind == 0
    clock.now += 100
    assert lag.verdict().stalled == []


def test_a_change_held_back_longer_than_the_stall_timeout_is_stalled_until_it_arrives():
    objects, clock, lag = setup()
    objects.observe(TS, body("a", "5"))
    lag.reported([Change((TS, "ns", "a"), "7")])
    clock.now += 4
    lag.reported([Change((TS, "ns", "a"), "9")])    # a newer change, no progress meanwhile: the clock runs on
    clock.now += 6
    assert lag.verdict().stalled == ["ToolServer ns/a (10s)"]
    objects.observe(TS, body("a", "9"))
    assert lag.verdict().stalled == [] and lag.verdict().behind == 0


def test_progress_on_an_object_restarts_its_clock():
    objects, clock, lag = setup()
    objects.observe(TS, body("a", "5"))
    lag.reported([Change((TS, "ns", "a"), "7")])
    clock.now += 8
    objects.observe(TS, body("a", "7"))             # delivered; meanwhile the server moved on again
    lag.reported([Change((TS, "ns", "a"), "9")])
    clock.now += 8
    assert lag.verdict().stalled == []              # lagging 8 s behind version 9, not 16 s


def test_our_own_write_already_in_the_cache_is_caught_up_and_a_deletion_once_the_cache_forgets_it():
    objects, clock, lag = setup()
    objects.observe(TS, body("a", "12"))            # the answer to our status write
    lag.reported([Change((TS, "ns", "a"), "12"), Change((TS, "ns", "b"), "13", deleted=True)])
    assert lag.verdict().behind == 0                # b was never cached: nothing to forget
    objects.observe(TS, body("c", "14"))
    lag.reported([Change((TS, "ns", "c"), "15", deleted=True)])
    verdict = lag.verdict()
    assert (verdict.behind, verdict.gone) == (1, 1)
    clock.now += 10
    assert lag.verdict().stalled == ["ToolServer ns/c (10s)"]
    objects.forget((TS, "ns", "c"))
    assert lag.verdict().behind == 0


def test_a_full_listing_finds_what_is_missing_older_or_gone_within_its_scope_only():
    objects, clock, lag = setup()
    objects.observe(TS, body("current", "5"))
    objects.observe(TS, body("older", "5"))
    objects.observe(TS, body("gone", "5"))
    objects.observe("ConnectorConfig", body("elsewhere", "5"))     # not what this listing speaks for
    lag.compared({(TS, "ns", "current"): "5", (TS, "ns", "older"): "8", (TS, "ns", "new"): "9"},
                 every=[(TS, "ns", "current"), (TS, "ns", "older"), (TS, "ns", "new"), (TS, "ns", "others")],
                 within=lambda key: key[0] == TS)
    verdict = lag.verdict()
    assert (verdict.behind, verdict.gone) == (3, 1)      # older, new, gone
