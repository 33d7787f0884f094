"""A small but realistic MCP server for the demo: a task tracker, built with the SDK's MCPServer.

Its tools have typed, documented parameters and typed results, so what the operator
caches is what a real server sends: inputSchema and outputSchema from the signatures,
descriptions from the docstrings, and readOnly/destructive/idempotent annotations.
The tasks live in memory. `DemoServer` serves it over streamable HTTP at
``http://HOST:PORT/mcp`` from a background thread with its own event loop, and can
change its tool list while running (`publish_update`) so the demo can show a refresh.

Standalone: ``python -m toolcatalog.demoserver --port 8765``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, TypeVar

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.subscriptions import InMemorySubscriptionBus, ToolsListChanged
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import Tool as MCPTool
from mcp_types import ToolAnnotations
from pydantic import BaseModel, Field

logger = logging.getLogger(__name__)
_T = TypeVar("_T")

SERVER_NAME = "tasks-demo"
SERVER_VERSION = "1.0.0"
MCP_PATH = "/mcp"
DEFAULT_PORT = 8765
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
# What publish_update() changes: one tool added, one description rewritten.
ADDED_TOOL = "assign_task"
CHANGED_TOOL = "list_tasks"

TaskState = Literal["todo", "in_progress", "blocked", "done"]
Priority = Literal["low", "normal", "high", "urgent"]
TaskId = Annotated[str, Field(description="The task's id, e.g. T-1001", pattern=r"^T-\d+$")]


class Task(BaseModel):
    id: str
    title: str
    description: str = ""
    status: TaskState = "todo"
    priority: Priority = "normal"
    assignee: str | None = None
    due_date: date | None = None
    tags: list[str] = Field(default_factory=list)
    created_at: datetime
    comment_count: int = 0
    attachment_count: int = 0


class TaskPage(BaseModel):
    tasks: list[Task]
    total: int = Field(description="How many tasks matched, before the limit")


class Comment(BaseModel):
    id: str
    task_id: str
    author: str
    body: str
    created_at: datetime


class Attachment(BaseModel):
    id: str
    task_id: str
    filename: str
    url: str
    media_type: str


class DeletedTask(BaseModel):
    task_id: str
    deleted: bool = Field(description="False when there was no such task (deleting is idempotent)")


class PurgeReport(BaseModel):
    deleted_tasks: int


class TaskStore:
    """The tracker's data, in memory; tools run in worker threads, so every access locks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tasks: dict[str, Task] = {}
        self._ids = itertools.count(1001)

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _task(self, task_id: str) -> Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise ToolError(f"no task {task_id}") from None  # the caller's mistake: an error result

    def create(self, **fields: Any) -> Task:
        with self._lock:
            task = Task(id=self._next_id("T"), created_at=datetime.now(UTC), **fields)
            self._tasks[task.id] = task
            return task

    def query(self, predicate: Callable[[Task], bool], limit: int) -> TaskPage:
        with self._lock:
            matched = sorted((t for t in self._tasks.values() if predicate(t)),
                             key=lambda t: t.created_at, reverse=True)
        return TaskPage(tasks=matched[:limit], total=len(matched))

    def update(self, task_id: str, **changes: Any) -> Task:
        with self._lock:
            task = self._task(task_id).model_copy(update=changes)
            self._tasks[task_id] = task
            return task

    def delete(self, task_id: str) -> bool:
        with self._lock:
            return self._tasks.pop(task_id, None) is not None

    def purge(self) -> int:
        with self._lock:
            count = len(self._tasks)
            self._tasks.clear()
            return count

    def count_on(self, task_id: str, field: Literal["comment_count", "attachment_count"]) -> str:
        """Bump a task's counter and return a new id for the comment or attachment."""
        with self._lock:
            task = self._task(task_id)
            self._tasks[task_id] = task.model_copy(update={field: getattr(task, field) + 1})
            return self._next_id("C" if field == "comment_count" else "A")


def _hints(*, read_only: bool = False, destructive: bool = False, idempotent: bool = False) -> ToolAnnotations:
    return ToolAnnotations(read_only_hint=read_only, destructive_hint=destructive,
                           idempotent_hint=idempotent, open_world_hint=False)


LIST_TASKS_DESCRIPTION = "List tasks, newest first, filtered by status, assignee or tag."
LIST_TASKS_DESCRIPTION_V2 = ("List tasks, newest first, filtered by status, assignee, tag or priority;"
                             " at most 100 per call (see total for how many matched).")


def _register_tools(server: MCPServer, store: TaskStore) -> None:
    """The tracker's first release: seven tools, one of them administrative."""

    @server.tool(title="Create a task", annotations=_hints())
    def create_task(
        title: Annotated[str, Field(min_length=1, max_length=200, description="Short summary")],
        description: Annotated[str, Field(max_length=10_000, description="Details, Markdown")] = "",
        priority: Priority = "normal",
        assignee: Annotated[str | None, Field(description="User name or e-mail")] = None,
        due_date: Annotated[date | None, Field(description="ISO date, e.g. 2026-12-01")] = None,
        tags: Annotated[list[str], Field(max_length=20)] = [],  # noqa: B006 (pydantic copies it)
    ) -> Task:
        """Create a task in the tracker and return it with its new id."""
        return store.create(title=title, description=description, priority=priority,
                            assignee=assignee, due_date=due_date, tags=tags)

    _add_list_tasks(server, store, LIST_TASKS_DESCRIPTION)

    @server.tool(title="Change a task's status", annotations=_hints(idempotent=True))
    def update_task_status(task_id: TaskId, status: TaskState) -> Task:
        """Move a task to another status (todo, in_progress, blocked, done)."""
        return store.update(task_id, status=status)

    @server.tool(title="Delete a task", annotations=_hints(destructive=True, idempotent=True))
    def delete_task(task_id: TaskId) -> DeletedTask:
        """Delete a task with its comments and attachments. This cannot be undone."""
        return DeletedTask(task_id=task_id, deleted=store.delete(task_id))

    @server.tool(title="Comment on a task", annotations=_hints())
    def add_comment(task_id: TaskId, body: Annotated[str, Field(min_length=1, max_length=5_000)],
                    author: Annotated[str, Field(description="Who is writing")] = "agent") -> Comment:
        """Add a comment to a task's discussion."""
        comment_id = store.count_on(task_id, "comment_count")
        return Comment(id=comment_id, task_id=task_id, author=author, body=body,
                       created_at=datetime.now(UTC))

    @server.tool(title="Attach a link to a task", annotations=_hints())
    def add_attachment(task_id: TaskId,
                       url: Annotated[str, Field(pattern=r"^https?://", description="Where the file lives")],
                       filename: Annotated[str, Field(min_length=1, max_length=255)],
                       media_type: str = "application/octet-stream") -> Attachment:
        """Attach a file to a task by URL (the tracker stores the link, not the bytes)."""
        attachment_id = store.count_on(task_id, "attachment_count")
        return Attachment(id=attachment_id, task_id=task_id, filename=filename, url=url, media_type=media_type)

    @server.tool(title="Purge the workspace", annotations=_hints(destructive=True, idempotent=True))
    def workspace_admin_purge(confirm: Annotated[Literal["purge"], Field(description='Type "purge"')]) -> PurgeReport:
        """Administrators only: delete every task in the workspace."""
        return PurgeReport(deleted_tasks=store.purge())


def _add_list_tasks(server: MCPServer, store: TaskStore, description: str) -> None:
    def list_tasks(status: TaskState | None = None, assignee: str | None = None, tag: str | None = None,
                   priority: Priority | None = None, limit: Annotated[int, Field(ge=1, le=100)] = 20) -> TaskPage:
        return store.query(lambda t: (status is None or t.status == status)
                           and (assignee is None or t.assignee == assignee)
                           and (tag is None or tag in t.tags)
                           and (priority is None or t.priority == priority), limit)

    server.add_tool(list_tasks, title="List tasks", description=description, annotations=_hints(read_only=True))


def _register_update(server: MCPServer, store: TaskStore) -> None:
    """The tracker's next release: a new tool, and a reworded one."""
    server.remove_tool(CHANGED_TOOL)
    _add_list_tasks(server, store, LIST_TASKS_DESCRIPTION_V2)

    def assign_task(task_id: TaskId,
                    assignee: Annotated[str | None, Field(description="User name or e-mail; null unassigns")]) -> Task:
        """Assign a task to someone, or unassign it."""
        return store.update(task_id, assignee=assignee)

    server.add_tool(assign_task, name=ADDED_TOOL, title="Assign a task", annotations=_hints(idempotent=True))


def build_server(store: TaskStore | None = None, subscriptions: InMemorySubscriptionBus | None = None) -> MCPServer:
    """The server; `subscriptions` is the bus its `subscriptions/listen` streams (2026-07-28) listen on."""
    server = MCPServer(SERVER_NAME, version=SERVER_VERSION, title="Tasks (toolcatalog demo)",
                       instructions="A task tracker: create, list, update and discuss tasks.",
                       subscriptions=subscriptions)
    _register_tools(server, store or TaskStore())
    return server


def _transport_security(host: str) -> TransportSecuritySettings | None:
    """The SDK's DNS-rebinding guard on loopback; off when serving other hosts (e.g. in a pod,
    where clients say the Service's name in the Host header)."""
    return None if host in LOOPBACK_HOSTS else TransportSecuritySettings(enable_dns_rebinding_protection=False)


def _uvicorn_config(server: MCPServer, host: str) -> uvicorn.Config:
    app = server.streamable_http_app(streamable_http_path=MCP_PATH, host=host,
                                     transport_security=_transport_security(host))
    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", loop="asyncio",
                          http="h11", ws="none", timeout_graceful_shutdown=1)


def _bound_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


class DemoServer:
    """The demo MCP server on a background thread: `start()`, `url`, `publish_update()`, `stop()`.

    `port=0` picks a free port. `fallback_to_free_port` takes any free port when `port` is busy
    (`port_was_busy` then says so).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT, *,
                 fallback_to_free_port: bool = False) -> None:
        self.host, self.requested_port = host, port
        self.fallback_to_free_port = fallback_to_free_port
        self.port_was_busy = False
        self.port: int | None = None
        self.store = TaskStore()
        self.subscriptions = InMemorySubscriptionBus()
        self.mcp = build_server(self.store, self.subscriptions)
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the demo server has not been started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{MCP_PATH}"

    def start(self) -> DemoServer:
        """Bind, serve, and return once the server answers requests."""
        try:
            sock = _bound_socket(self.host, self.requested_port)
        except OSError:
            if not self.fallback_to_free_port or self.requested_port == 0:
                raise
            self.port_was_busy = True
            sock = _bound_socket(self.host, 0)
        self.port = int(sock.getsockname()[1])
        uv = self._uvicorn = uvicorn.Server(_uvicorn_config(self.mcp, self.host))

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            await uv.serve(sockets=[sock])

        self._thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True,
                                        name=f"demo-mcp-server-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not uv.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)  # a plain thread waiting for uvicorn's flag, not async code
        if not uv.started:
            self.stop()
            raise RuntimeError(f"the demo MCP server did not start on {self.host}:{self.port}")
        return self

    def _on_server_loop(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run `coro` on the serving loop (or a fresh one when not serving); wait for its result."""
        if self._loop is None or self._thread is None or not self._thread.is_alive():
            return asyncio.run(coro)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=START_TIMEOUT)

    def tools(self) -> list[MCPTool]:
        """What tools/list answers right now."""
        return self._on_server_loop(self.mcp.list_tools())

    def tool_names(self) -> list[str]:
        return sorted(tool.name for tool in self.tools())

    def publish_update(self, *, notify: bool = False) -> None:
        """Release the tracker's next version while serving: add `assign_task`, reword `list_tasks`.

        Done on the server's own loop so no tools/list sees a half-changed tool table. With `notify`,
        the server then tells its listeners that its tool list changed, as a real server that advertises
        tools.listChanged does (the sandbox); without, only a refresh or the cache's expiry finds the
        release (the demo shows a refresh's diff).
        """
        async def update() -> None:
            _register_update(self.mcp, self.store)
            if notify:
                await self.subscriptions.publish(ToolsListChanged())

        self._on_server_loop(update())

    def stop(self) -> None:
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
        self._thread, self._uvicorn, self._loop = None, None, None

    def __enter__(self) -> DemoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolcatalog.demoserver", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    server = build_server()
    names = ", ".join(sorted(tool.name for tool in asyncio.run(server.list_tools())))
    host = f"[{args.host}]" if ":" in args.host else args.host
    logger.info("serving MCP server %s %s at http://%s:%d%s (Ctrl-C stops)", SERVER_NAME, SERVER_VERSION,
                host, args.port, MCP_PATH)
    logger.info("tools: %s", names)
    config = _uvicorn_config(server, args.host)
    config.host, config.port = args.host, args.port
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
