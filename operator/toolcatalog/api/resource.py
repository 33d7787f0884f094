"""One ToolServer or ConnectorConfig as the operator sees it: its body parsed once, at the edge.

`Resource.from_body` keeps what a reconcile reads (identity, generation, our annotations, the typed
spec or why it is invalid, the typed status) and drops the rest of the body (managedFields, other
annotations), so the object cache stays small.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from . import constants as c
from .errors import SyncError
from .models import Status
from .spec import Spec, parse_spec

logger = logging.getLogger(__name__)

ObjectKey = tuple[str, str, str]    # kind, namespace, name


def resource_version_newer(candidate: str | None, current: str | None) -> bool:
    """Whether `candidate` is at least as new as `current`.

    resourceVersions are opaque, but etcd-backed servers hand out increasing integers; an older
    watch event must never replace the body our own write returned. Non-integers: trust the newcomer.
    """
    if current is None or candidate is None:
        return True
    try:
        return int(candidate) >= int(current)
    except ValueError:
        return True


@dataclass(frozen=True)
class Resource:
    kind: str
    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str | None
    annotations: Mapping[str, str]
    spec: Spec | None
    spec_error: SyncError | None
    status: Status
    deleting: bool = False

    @property
    def key(self) -> ObjectKey:
        return (self.kind, self.namespace, self.name)

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @classmethod
    def from_body(cls, kind: str, body: Mapping[str, Any]) -> Resource:
        meta = body.get("metadata") or {}
        annotations = {key: str(value) for key, value in (meta.get("annotations") or {}).items()
                       if key.startswith(f"{c.GROUP}/")}
        spec: Spec | None = None
        spec_error: SyncError | None = None
        try:
            spec = parse_spec(kind, body.get("spec") or {})
        except SyncError as error:
            spec_error = error
        try:
            status = Status.model_validate(body.get("status") or {})
        except ValidationError:
            logger.warning("%s %s/%s: unreadable status, starting afresh", kind, meta.get("namespace"),
                           meta.get("name"))
            status = Status()
        return cls(kind=kind, namespace=str(meta.get("namespace") or ""), name=str(meta.get("name") or ""),
                   uid=str(meta.get("uid") or ""), generation=int(meta.get("generation") or 0),
                   resource_version=meta.get("resourceVersion"), annotations=annotations, spec=spec,
                   spec_error=spec_error, status=status, deleting=bool(meta.get("deletionTimestamp")))
