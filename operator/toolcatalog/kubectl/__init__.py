"""The kubectl plugin (`kubectl toolcatalog ...`): installed with the `kubectl` extra."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """The `kubectl-toolcatalog` entry point: a clear message when the kubectl extra is missing."""
    try:
        from .plugin import main as plugin_main
    except ImportError as error:
        if (error.name or "").split(".")[0] not in ("kubernetes", "urllib3"):
            raise
        print("error: kubectl toolcatalog needs the official kubernetes client: pip install 'toolcatalog[kubectl]'",
              file=sys.stderr)
        return 4
    return plugin_main(argv)
