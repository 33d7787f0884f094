"""Waiting on a condition with a deadline (never sleeping and hoping): for the tests, the demo and benches."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


class WaitFailed(AssertionError):
    """The condition did not come true in time, or the process it depends on exited meanwhile."""


async def wait_for(check: Callable[[], Awaitable[_T] | _T], *, timeout: float = 20.0, what: str = "condition",
                   interval: float = 0.05, process: Any = None) -> _T:
    """The first truthy value of `check()` (sync or async), polled every `interval` seconds.

    Raises WaitFailed naming `what` after `timeout` seconds, or at once when `process` (an
    OperatorProcess) exited; both carry the tail of its log.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if process is not None and process.exited() is not None:
            raise WaitFailed(f"the operator exited with {process.exited()} while waiting for {what}:\n"
                             f"{process.log_tail()}")
        if loop.time() > deadline:
            tail = f"\n{process.log_tail()}" if process is not None else ""
            raise WaitFailed(f"timed out after {timeout:g}s waiting for {what}{tail}")
        await asyncio.sleep(interval)
