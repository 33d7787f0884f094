"""The large catalogs the last syncs wrote, as parsed documents, for the next merge of each.

The reconciler keeps every catalog it wrote as compressed text (`reconciler._Written`), about 2 KiB a
resource, and parses it again when the next sync merges a changed answer into it. For a large catalog
that parse is a good part of the sync (a 500-tool document: some 8 ms), and a catalog that just changed
is the one most likely to change again soon (a refresh after a refresh; a server that notifies of each
change). So the documents of the most recent writes of large catalogs are kept parsed, within a bound on
their text (the parsed form takes a few times as much memory). Small catalogs parse in well under a
millisecond and are many: they are not kept.

An entry is found only for the exact write it came from (ConfigMap name and resourceVersion): the
document the operator rendered for that write is the one the ConfigMap holds at that version.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ..api.models import CacheDocument

MIN_BYTES = 64 * 1024       # about 100 tools: smaller documents parse in about a millisecond
MAX_BYTES = 1024 * 1024     # of document text in all: some 5 MiB parsed


@dataclass(frozen=True, slots=True)
class _Held:
    name: str
    resource_version: str
    size: int
    document: CacheDocument


@dataclass
class RecentDocuments:
    """Parsed cache documents by resource uid, most recently written last, within `max_bytes` of their text."""

    min_bytes: int = MIN_BYTES
    max_bytes: int = MAX_BYTES
    _held: OrderedDict[str, _Held] = field(default_factory=OrderedDict)
    _bytes: int = 0

    def remember(self, uid: str, name: str, resource_version: str | None, size: int, document: CacheDocument) -> None:
        """The document written to ConfigMap `name`, answered with `resource_version`; `size`: its JSON text."""
        self.forget(uid)
        if resource_version is None or not self.min_bytes <= size <= self.max_bytes:
            return
        self._held[uid] = _Held(name, resource_version, size, document)
        self._bytes += size
        while self._bytes > self.max_bytes:
            _, oldest = self._held.popitem(last=False)
            self._bytes -= oldest.size

    def get(self, uid: str, name: str, resource_version: str | None) -> CacheDocument | None:
        """The document of that write, if it is held (never one of another version)."""
        held = self._held.get(uid)
        if held is None or resource_version is None or held.name != name \
                or held.resource_version != resource_version:
            return None
        self._held.move_to_end(uid)
        return held.document

    def forget(self, uid: str) -> None:
        held = self._held.pop(uid, None)
        if held is not None:
            self._bytes -= held.size

    def __len__(self) -> int:
        return len(self._held)
