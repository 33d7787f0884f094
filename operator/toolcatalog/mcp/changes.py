"""What a change listener calls when the server's tool list changed: shared by listen.py, the entry point
that imports no SDK, and listensession.py, the SDK side it loads lazily (so neither imports the other's
names back: no import cycle)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

OnChange = Callable[[], Awaitable[None] | None]
