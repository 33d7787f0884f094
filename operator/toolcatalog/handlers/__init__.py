"""kopf registrations: thin handlers that parse, call the sync path, and patch.

Importing this package registers every handler with kopf's default registry.
"""

from . import lifecycle, resources, watches  # noqa: F401
from . import listchanged  # noqa: F401  (after lifecycle: its start-up handler needs the engine)
