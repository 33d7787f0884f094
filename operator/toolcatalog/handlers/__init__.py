"""kopf registrations only: watches and indexes that enqueue keys, start-up and shutdown.

`build_registry` registers every handler into a fresh registry (nothing registers at import).
"""

from __future__ import annotations

import kopf

from ..api.redact import Redactor
from ..config import OperatorConfig
from . import lifecycle, watch


def build_registry(config: OperatorConfig, redactor: Redactor) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    watch.register(registry)
    lifecycle.register(registry, config, redactor)
    return registry
