"""A Kubernetes API proxy on loopback that can stall watches and slow down chosen requests: for the
tests of liveness (stalled watches), of graceful shutdown (a sync caught while it writes) and of
throttling (a 429 with Retry-After).

    with ApiProxy(upstream_url, ssl_context=...) as proxy:   # its own thread and event loop
        kubeconfig = proxy.write_kubeconfig(path, token=...)  # http://127.0.0.1:PORT
        proxy.stall_watches()        # watch streams deliver nothing (bookmarks neither) until resumed
        proxy.delay("PATCH", r"/configmaps/", 3.0)            # such requests wait 3 s before going up
        proxy.refuse("POST", r"/configmaps", 429, "TooManyRequests", retry_after=3)   # answered here, once
        await proxy.wait_for_request("PATCH", r"/configmaps/")

It speaks plain HTTP to its client (the operator: a kubeconfig with a bearer token, or none on the
emulator) and forwards every request as it came, headers and body, to the API server (plain HTTP to
the emulator, HTTPS with the control plane's CA to a real one): the API server authenticates and
authorizes the operator's own ServiceAccount token. Responses stream back chunk by chunk, so watches
work through it. Public aiohttp APIs only.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import yaml

# Not forwarded either way: they describe one hop, not the message.
HOP_HEADERS = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                         "proxy-authorization", "proxy-authenticate", "content-length"})


@dataclass(frozen=True)
class Seen:
    method: str
    path: str           # with the query string
    at: float


class ApiProxy:
    def __init__(self, upstream: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.ssl_context = ssl_context
        self.port = 0
        self.seen: list[Seen] = []
        self._delays: list[tuple[str, re.Pattern[str], float]] = []
        self._spare: re.Pattern[str] | None = None
        self._refusals: list[list[Any]] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._flowing: asyncio.Event | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._in_flight = 0

    # -- knobs, from any thread ------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stall_watches(self, spare: str | None = None) -> None:
        """From now on, watch responses deliver nothing more (their bytes wait here), and new watches
        are held before they reach the API server; but those whose path and query match `spare` (e.g.
        short watches with `timeoutSeconds`, not kopf's streams)."""
        with self._lock:
            self._spare = re.compile(spare) if spare else None
        self._call(lambda: self._flowing.clear() if self._flowing else None)

    def resume_watches(self) -> None:
        self._call(lambda: self._flowing.set() if self._flowing else None)

    def delay(self, method: str, path_pattern: str, seconds: float) -> None:
        """Requests of `method` whose path matches `path_pattern` wait `seconds` before going up."""
        with self._lock:
            self._delays.append((method.upper(), re.compile(path_pattern), seconds))

    def refuse(self, method: str, path_pattern: str, status: int, reason: str, *, retry_after: float | None = None,
               times: int = 1) -> None:
        """The next `times` requests of `method` whose path matches `path_pattern` are answered here with a
        Kubernetes Status of `status` and `reason` (and a Retry-After header), as an API server that
        throttles (429) or is unavailable (503) answers; they never reach it."""
        with self._lock:
            self._refusals.append([method.upper(), re.compile(path_pattern), status, reason, retry_after, times])

    def clear_delays(self) -> None:
        with self._lock:
            self._delays.clear()

    def requests(self, method: str | None = None, path_pattern: str | None = None) -> list[Seen]:
        with self._lock:
            seen = list(self.seen)
        return [one for one in seen if (method is None or one.method == method.upper())
                and (path_pattern is None or re.search(path_pattern, one.path))]

    async def wait_for_request(self, method: str, path_pattern: str, *, count: int = 1,
                               timeout: float = 20.0) -> Seen:
        """The `count`-th request seen (arrived, maybe still delayed) matching `method` and `path_pattern`."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.requests(method, path_pattern)
            if len(found) >= count:
                return found[count - 1]
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {method} {path_pattern} through the API proxy within {timeout:g}s")
            await asyncio.sleep(0.02)

    @property
    def in_flight(self) -> int:
        """Requests (other than watches) that arrived and are not answered yet."""
        with self._lock:
            return self._in_flight

    async def wait_idle(self, timeout: float = 20.0) -> None:
        """Until no request but watches is in flight: every delayed write has gone up and been answered."""
        deadline = time.monotonic() + timeout
        while self.in_flight:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.in_flight} requests still in flight through the API proxy")
            await asyncio.sleep(0.02)

    def write_kubeconfig(self, path: Path, *, token: str | None = None, namespace: str = "default") -> Path:
        user: dict[str, Any] = {"token": token} if token else {}
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "proxied",
            "clusters": [{"name": "proxied", "cluster": {"server": self.url}}],
            "users": [{"name": "proxied", "user": user}],
            "contexts": [{"name": "proxied", "context": {"cluster": "proxied", "user": "proxied",
                                                         "namespace": namespace}}],
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> ApiProxy:
        self._thread = threading.Thread(target=self._run, name="api-proxy", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout=10) or self._error is not None:
            raise RuntimeError(f"the API proxy did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._call(lambda: self._flowing.set() if self._flowing else None)
            self._call(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> ApiProxy:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def _call(self, function: Any) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(function)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:     # reported to start()
            self._error = error
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._flowing, self._stop = asyncio.Event(), asyncio.Event()
        self._flowing.set()
        connector = aiohttp.TCPConnector(ssl=self.ssl_context if self.ssl_context is not None else False)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)) as session:
            app = aiohttp.web.Application(client_max_size=64 * 1024 * 1024)
            async def forward(request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
                return await self._forward(request, session)

            app.router.add_route("*", "/{path:.*}", forward)
            runner = aiohttp.web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
            await runner.setup()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            await aiohttp.web.SockSite(runner, sock).start()
            self._started.set()
            try:
                await self._stop.wait()
            finally:
                await runner.cleanup()

    def _delay_for(self, method: str, path: str) -> float:
        with self._lock:
            return sum(seconds for wanted, pattern, seconds in self._delays
                       if wanted == method and pattern.search(path))

    async def _forward(self, request: aiohttp.web.Request,
                       session: aiohttp.ClientSession) -> aiohttp.web.StreamResponse:
        path = request.path_qs
        counted = request.query.get("watch") not in ("true", "1")
        with self._lock:
            self.seen.append(Seen(request.method, path, time.monotonic()))
            self._in_flight += counted
        try:
            return await self._relay(request, session, path)
        except (ConnectionResetError, aiohttp.ClientConnectionError):     # one side went away
            return aiohttp.web.Response(status=502)
        finally:
            with self._lock:
                self._in_flight -= counted

    def _refusal_for(self, method: str, path: str) -> list[Any] | None:
        with self._lock:
            for refusal in self._refusals:
                if refusal[0] == method and refusal[1].search(path) and refusal[5] > 0:
                    refusal[5] -= 1
                    return refusal
        return None

    async def _relay(self, request: aiohttp.web.Request, session: aiohttp.ClientSession,
                     path: str) -> aiohttp.web.StreamResponse:
        assert self._flowing is not None
        body = await request.read()
        refusal = self._refusal_for(request.method, path)
        if refusal is not None:
            _, _, status, reason, retry_after, _ = refusal
            status_body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": f"refused by the test's API proxy ({reason})", "reason": reason, "code": status}
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            return aiohttp.web.json_response(status_body, status=status, headers=headers)
        delay = self._delay_for(request.method, path)
        if delay:
            await asyncio.sleep(delay)
        watch = request.query.get("watch") in ("true", "1")
        with self._lock:
            if watch and self._spare is not None and self._spare.search(path):
                watch = False           # spared: it flows
        if watch:
            await self._flowing.wait()
        headers = {name: value for name, value in request.headers.items() if name.lower() not in HOP_HEADERS}
        async with session.request(request.method, self.upstream + path, headers=headers,
                                   data=body if body else None, allow_redirects=False) as upstream:
            response = aiohttp.web.StreamResponse(status=upstream.status, reason=upstream.reason)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_HEADERS:
                    response.headers.add(name, value)
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                if watch:
                    await self._flowing.wait()
                await response.write(chunk)
            await response.write_eof()
            return response

