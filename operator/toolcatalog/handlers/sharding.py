"""Sharding past one process, the way kube-state-metrics shards: by a stable hash of the object's uid.

`toolcatalog run --shard I --total-shards N` takes only the ToolServers and ConnectorConfigs whose
uid hashes to shard I: FNV-1a (64 bit) of the uid, then Lamping and Veach's jump consistent hash
into N buckets (kube-state-metrics' `pkg/sharding` does exactly this). Every process still watches
everything (the API server cannot filter by a hash), but it keeps the others' resources out of
its work queue, its indexes of references and its caches: it never syncs them, never writes their
status, and a Secret or ConfigMap that only they reference wakes nothing in it.

One exception, for correctness: a ConnectorConfig of this shard may inherit from a ToolServer of
another. Such a ToolServer's identity and spec (never its status) are remembered, so that the
ConnectorConfig can be resynced when it changes, exactly as without sharding; it is never synced.

A uid never changes, so a resource stays with its shard for its whole life. Changing N moves
about 1/N of the resources (the point of a consistent hash). Run as a StatefulSet's pod
(`--pod`, autoshard.py), a process takes I and N from the StatefulSet and follows N.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1
JUMP_MULTIPLIER = 2862933555777941757


def fnv1a_64(data: bytes) -> int:
    """FNV-1a, 64 bit (Go's hash/fnv New64a)."""
    value = FNV64_OFFSET
    for byte in data:
        value = ((value ^ byte) * FNV64_PRIME) & MASK64
    return value


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping and Veach, 2014): a bucket in [0, buckets) for a 64-bit key.

    Going from n to n+1 buckets moves only the keys that land in the new bucket, about 1/(n+1) of them.
    """
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    key &= MASK64
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * JUMP_MULTIPLIER + 1) & MASK64
        candidate = int((bucket + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return bucket


def shard_of(uid: str, total: int) -> int:
    """The shard (0 .. total-1) that owns the object with this uid."""
    return jump_hash(fnv1a_64(uid.encode()), total)


@dataclass(frozen=True)
class Shard:
    """This process's share: shard `index` of `total` (0 of 1: everything, no sharding)."""

    index: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1:
            raise ValueError(f"--total-shards must be at least 1, not {self.total}")
        if not 0 <= self.index < self.total:
            raise ValueError(f"--shard must be in 0..{self.total - 1} for --total-shards {self.total}, "
                             f"not {self.index}")

    @property
    def sharded(self) -> bool:
        return self.total > 1

    def owns(self, uid: str | None) -> bool:
        """Whether the object with this uid is this process's (everything is, unsharded)."""
        if not self.sharded:
            return True
        return shard_of(uid or "", self.total) == self.index

    def describe(self) -> str:
        return f"shard {self.index} of {self.total}" if self.sharded else "unsharded"


def identity_and_spec(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a ConnectorConfig reads of a ToolServer from another shard: who it is and its spec."""
    meta = body.get("metadata") or {}
    kept = ("name", "namespace", "uid", "generation", "resourceVersion", "deletionTimestamp")
    return {"metadata": {key: meta[key] for key in kept if key in meta}, "spec": body.get("spec") or {}}


def statefulset_pod(pod: str) -> tuple[str, int]:
    """The StatefulSet and the ordinal of one of its pods, from the pod's name (`<statefulset>-<ordinal>`)."""
    statefulset, dash, ordinal = pod.rpartition("-")
    if not dash or not statefulset or not ordinal.isascii() or not ordinal.isdigit() \
            or (len(ordinal) > 1 and ordinal.startswith("0")):
        raise ValueError(f"--pod {pod!r} is not the name of a StatefulSet's pod (<statefulset>-<ordinal>)")
    return statefulset, int(ordinal)


def statefulset_shards(statefulset: Mapping[str, Any]) -> tuple[int, int]:
    """(replicas, first ordinal) of a StatefulSet: its pods are shards 0 .. replicas-1 of `replicas`."""
    spec = statefulset.get("spec") or {}
    replicas = spec.get("replicas")
    start = (spec.get("ordinals") or {}).get("start") or 0
    return (1 if replicas is None else int(replicas)), int(start)
