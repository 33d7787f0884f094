"""Shard hashing: FNV-1a 64 of the uid, then jump consistent hash, as kube-state-metrics shards.

The expected values were computed with Go's hash/fnv and a Go jump hash (float64 arithmetic, as
kube-state-metrics' dependency does it), so a Python rounding difference would show here.
"""

from __future__ import annotations

import uuid

import pytest

from toolcatalog.cli import build_parser, config_from, main
from toolcatalog.handlers.sharding import (
    Shard,
    fnv1a_64,
    identity_and_spec,
    jump_hash,
    shard_of,
    statefulset_pod,
    statefulset_shards,
)

GO_UIDS = {  # uid -> its shard for 2, 3, 10 and 1000 shards (Go)
    "6a1c3e2b-4f0d-4c8e-9a57-1b2f3c4d5e6f": (1, 1, 3, 699),
    "0f8fad5b-d9cb-469f-a165-70867728950e": (0, 2, 9, 614),
    "7c9e6679-7425-40de-944b-e07fc1f90ae7": (0, 0, 0, 293),
    "a8098c1a-f86e-11da-bd1a-00112444be1e": (1, 1, 7, 963),
}


@pytest.mark.parametrize(("text", "expected"), [
    ("", 0xCBF29CE484222325), ("a", 0xAF63DC4C8601EC8C), ("foobar", 0x85944171F73967E8)])
def test_fnv1a_64_matches_the_reference(text: str, expected: int) -> None:
    assert fnv1a_64(text.encode()) == expected


@pytest.mark.parametrize(("key", "expected"), [
    (0, (0, 0, 0, 0)), (1, (0, 0, 6, 21134)), (0xDEADBEEF, (0, 1, 5, 64244)), (2**64 - 1, (0, 1, 2, 18311))])
def test_jump_hash_matches_go(key: int, expected: tuple[int, ...]) -> None:
    assert tuple(jump_hash(key, buckets) for buckets in (1, 2, 7, 1 << 16)) == expected


@pytest.mark.parametrize("uid", sorted(GO_UIDS))
def test_shard_of_a_uid_matches_go(uid: str) -> None:
    assert tuple(shard_of(uid, total) for total in (2, 3, 10, 1000)) == GO_UIDS[uid]


def test_jump_hash_is_consistent_one_more_shard_moves_keys_only_to_it() -> None:
    keys = [fnv1a_64(str(uuid.UUID(int=i)).encode()) for i in range(2000)]
    for buckets in range(1, 12):
        for key in keys:
            before, after = jump_hash(key, buckets), jump_hash(key, buckets + 1)
            assert after == before or after == buckets
            assert 0 <= after <= buckets


def test_shares_are_about_even() -> None:
    uids = [str(uuid.UUID(int=i * 7919 + 13)) for i in range(6000)]
    for total in (2, 3, 5):
        counts = [0] * total
        for uid in uids:
            counts[shard_of(uid, total)] += 1
        expected = len(uids) / total
        assert all(abs(count - expected) < 0.1 * expected for count in counts), counts


def test_every_uid_belongs_to_exactly_one_shard() -> None:
    shards = [Shard(index, 4) for index in range(4)]
    for i in range(500):
        uid = str(uuid.UUID(int=i))
        assert sum(shard.owns(uid) for shard in shards) == 1


def test_unsharded_owns_everything() -> None:
    shard = Shard()
    assert not shard.sharded
    assert shard.owns("anything") and shard.owns(None) and shard.owns("")
    assert shard.describe() == "unsharded"
    assert Shard(1, 2).describe() == "shard 1 of 2"


@pytest.mark.parametrize(("index", "total"), [(-1, 2), (2, 2), (0, 0), (5, 3)])
def test_invalid_shards_are_refused(index: int, total: int) -> None:
    with pytest.raises(ValueError):
        Shard(index, total)


def test_flags_and_environment() -> None:
    args = build_parser({}).parse_args(["run", "--shard", "1", "--total-shards", "3"])
    config = config_from(args)
    assert (config.shard, config.total_shards) == (1, 3)
    env = {"TOOLCATALOG_SHARD": "2", "TOOLCATALOG_TOTAL_SHARDS": "4"}
    config = config_from(build_parser(env).parse_args(["run"]))
    assert (config.shard, config.total_shards) == (2, 4)
    config = config_from(build_parser({}).parse_args(["run"]))
    assert (config.shard, config.total_shards) == (0, 1)


def test_a_shard_outside_the_total_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--shard", "2", "--total-shards", "2"])
    assert exit_info.value.code == 2
    assert "--shard" in capsys.readouterr().err


def test_a_foreign_toolserver_is_remembered_without_its_status() -> None:
    body = {"apiVersion": "toolcatalog.dev/v1alpha1", "kind": "ToolServer",
            "metadata": {"name": "s", "namespace": "n", "uid": "u", "generation": 3, "resourceVersion": "9",
                         "annotations": {"a": "b"}, "managedFields": [{"x": 1}]},
            "spec": {"url": "http://127.0.0.1:1/mcp"}, "status": {"toolCount": 5}}
    assert identity_and_spec(body) == {
        "metadata": {"name": "s", "namespace": "n", "uid": "u", "generation": 3, "resourceVersion": "9"},
        "spec": {"url": "http://127.0.0.1:1/mcp"}}


@pytest.mark.parametrize(("pod", "expected"), [
    ("toolcatalog-0", ("toolcatalog", 0)), ("toolcatalog-12", ("toolcatalog", 12)),
    ("my-release-toolcatalog-3", ("my-release-toolcatalog", 3))])
def test_a_statefulset_pods_name_gives_its_statefulset_and_ordinal(pod: str, expected: tuple[str, int]) -> None:
    assert statefulset_pod(pod) == expected


@pytest.mark.parametrize("pod", ["toolcatalog", "toolcatalog-", "-1", "toolcatalog-01", "toolcatalog-x",
                                 "toolcatalog-٣"])
def test_a_name_that_is_no_statefulset_pods_is_refused(pod: str) -> None:
    with pytest.raises(ValueError, match="not the name of a StatefulSet's pod"):
        statefulset_pod(pod)


def test_a_statefulsets_replicas_are_the_shards_counted_from_its_first_ordinal() -> None:
    assert statefulset_shards({"spec": {"replicas": 3}}) == (3, 0)
    assert statefulset_shards({"spec": {}}) == (1, 0)                   # the API server's default
    assert statefulset_shards({"spec": {"replicas": 0}}) == (0, 0)
    assert statefulset_shards({"spec": {"replicas": 2, "ordinals": {"start": 5}}}) == (2, 5)


def test_the_pod_flags_and_their_environment() -> None:
    env = {"TOOLCATALOG_POD": "toolcatalog-1", "TOOLCATALOG_POD_NAMESPACE": "toolcatalog-system"}
    config = config_from(build_parser(env).parse_args(["run"]))
    assert (config.pod, config.pod_namespace, config.shard, config.total_shards) == \
        ("toolcatalog-1", "toolcatalog-system", 0, 1)
    assert config_from(build_parser({}).parse_args(["run"])).pod is None


@pytest.mark.parametrize(("argv", "said"), [
    (["--pod", "toolcatalog-1"], "--pod-namespace"),
    (["--pod", "toolcatalog-1", "--pod-namespace", "ns", "--total-shards", "2"], "drop --shard"),
    (["--pod", "toolcatalog", "--pod-namespace", "ns"], "not the name of a StatefulSet's pod")])
def test_pod_flags_that_cannot_work_are_usage_errors(argv: list[str], said: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["run", *argv])
    assert exit_info.value.code == 2
    assert said in capsys.readouterr().err
